"""The grader's containment, class by class, with cases of the project's own.

- what the sandbox shows: a path to hide inside a system folder (a clone under
  /usr/src) is covered; a file the grader reads from a program's folder is
  never a link or a FIFO;
- what goes into the VM: library names from a student's binary resolve only
  inside the library folders, never to another file, a device or a FIFO;
- how the grader stops: SIGTERM and SIGHUP to grader/grade end pytest, the
  sandboxes and QEMU, and remove the scratch folders;
- where the repository is: a copy in a folder only root can traverse (a clone
  under /root, `mktemp -d`), with its kernel cache copied along, grades a VM
  lab with full marks.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from gradelib import sandbox
from gradelib.cli import REPO
from gradelib.sandbox import Contained, Limits

GRADE = REPO / "grader" / "grade"


def _run(argv: list[str], cwd: Path, **kw) -> sandbox.Exit:
    sandbox.make_writable(cwd)
    c = Contained(argv, cwd=cwd, writable=[cwd], env={"PATH": "/usr/bin:/bin", "HOME": str(cwd)},
                  limits=Limits(), stdin=False, **kw)
    return c.wait(timeout=20)


# --- what the sandbox shows --------------------------------------------------------------------

@pytest.fixture
def system_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder the sandbox treats as a system folder (like /usr), with a 'repository' inside."""
    d = Path(tempfile.mkdtemp(prefix="hostile-sysdir-", dir="/var/tmp"))
    os.chmod(d, 0o755)
    (d / "repo" / "solutions").mkdir(parents=True)
    (d / "repo" / "solutions" / "answer.txt").write_text("the answer\n")
    (d / "tool.txt").write_text("a system file\n")
    monkeypatch.setattr(sandbox, "SYSTEM_DIRS", [*sandbox.SYSTEM_DIRS, str(d)])
    monkeypatch.setattr(sandbox, "_hidden", {*sandbox._hidden, d / "repo"})
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_a_hidden_folder_inside_a_system_folder_is_covered(system_dir: Path, tmp_path: Path) -> None:
    if not sandbox.bwrap_usable():
        pytest.skip("no bwrap sandbox on this machine")
    ex = _run(["/bin/sh", "-c", f"cat {system_dir}/tool.txt; cat {system_dir}/repo/solutions/answer.txt; "
               f"ls -A {system_dir}/repo"], tmp_path / "run")
    out = ex.stdout.decode()
    assert "a system file" in out, "the system folder itself must stay visible"
    assert "the answer" not in out and "solutions" not in out, f"the hidden folder was visible:\n{out}"


def test_the_sandbox_shows_no_home_repository_or_var(tmp_path: Path) -> None:
    if not sandbox.bwrap_usable():
        pytest.skip("no bwrap sandbox on this machine")
    ex = _run(["/bin/sh", "-c", f"ls -d {REPO} /root /home /var /work /opt 2>/dev/null; echo end"], tmp_path / "run")
    assert ex.stdout.decode().split() == ["end"], f"visible in the sandbox: {ex.stdout.decode()}"


def test_a_link_or_fifo_in_place_of_a_file_is_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("secret\n")
    (tmp_path / "link").symlink_to(secret)
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "plain").write_text("plain\n")
    assert sandbox.read_untrusted(tmp_path / "link") is None
    t0 = time.monotonic()
    assert sandbox.read_untrusted(tmp_path / "fifo") is None  # and it did not block
    assert time.monotonic() - t0 < 5
    assert sandbox.read_untrusted(tmp_path / "plain") == b"plain\n"


def test_control_characters_are_shown_as_escapes() -> None:
    raw = "a\x1b[2J\x1b]0;t\x07b\x9b1;1H\r\x00\x7f\tc\nd\u202e"
    shown = sandbox.inert(raw)
    assert shown == "a\\x1b[2J\\x1b]0;t\\x07b\\x9b1;1H\\x0d\\x00\\x7f\tc\nd\\u202e"


def test_the_watchdog_stops_a_tree_that_eats_memory_through_exec(tmp_path: Path) -> None:
    run = _mk(tmp_path / "run")
    c = Contained(["/bin/sh", "-c", "exec /usr/bin/perl -e '$x = \"a\" x (2 * 1024 ** 3); sleep 30'"],
                  cwd=run, writable=[run], env={"PATH": "/usr/bin:/bin"},
                  limits=Limits(address_space=None, memory=256 << 20), stdin=False)
    ex = c.wait(timeout=60)
    assert ex.killed_for and "256 MiB of memory" in ex.killed_for, ex


def _mk(p: Path) -> Path:
    sandbox.make_writable(p)
    return p


# --- what goes into the VM -----------------------------------------------------------------------

def _binary_needing(tmp_path: Path, soname: str) -> bytes:
    """A program whose DT_NEEDED entry is `soname` (made by linking it against a library with that soname)."""
    lib = tmp_path / "libfake.so"
    (tmp_path / "fake.c").write_text("int fake(void) { return 1; }\n")
    (tmp_path / "main.c").write_text("int fake(void);\nint main(void) { return fake(); }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", str(lib), str(tmp_path / "fake.c")],
                   check=True)
    subprocess.run(["gcc", "-o", str(tmp_path / "main"), str(tmp_path / "main.c"), str(lib)], check=True)
    return (tmp_path / "main").read_bytes()


@pytest.mark.parametrize("soname", ["../../../../../etc/shadow", "/etc/passwd", "../../../../dev/zero",
                                    "libc.so.6/../../../../etc/hostname"])
def test_a_crafted_library_name_copies_nothing_into_the_vm(tmp_path: Path, soname: str) -> None:
    from vm import initramfs
    data = _binary_needing(tmp_path, soname)
    assert soname in initramfs.needed_libs(data), "the test binary should name the crafted library"
    found = initramfs.library_closure([data], {"libc.so.6", "ld-linux-x86-64.so.2"})
    assert soname not in found and not any("etc" in str(p) or "dev" in str(p) for p in found.values()), found


# --- how the grader stops ------------------------------------------------------------------------

def _tree(pid: int) -> set[int]:
    return set(sandbox.tree_pids(pid))


def _grade_then_signal(args: list[str], sig: signal.Signals, started: str, tmp_path: Path,
                       delay: float = 1.0) -> None:
    """Run grader/grade, and once a line matching `started` is printed (and `delay` s later), send sig:
    it must end with 128+sig, and leave no process of its tree and no scratch folder."""
    tmpdir = tmp_path / "tmp"  # the grader's scratch folders go here, apart from any other grading's
    tmpdir.mkdir()
    proc = subprocess.Popen([str(GRADE), "--out", str(tmp_path / "out"), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env=dict(os.environ, TMPDIR=str(tmpdir)))
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if started in line:
            break
    else:
        pytest.fail("grader/grade ended before the point where the test stops it:\n" + "".join(lines))
    time.sleep(delay)
    tree = _tree(proc.pid)
    assert len(tree) > 2, "grading should be running programs by now"
    proc.send_signal(sig)
    try:
        rest, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"grader/grade did not end within 60 s of {sig.name}")
    out = "".join(lines) + rest
    assert proc.returncode == 128 + sig, f"exit status {proc.returncode}:\n{out}"
    assert sig.name in out, out
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(sandbox.process_state(p) not in (None, "Z") for p in tree):
        time.sleep(0.1)
    left = [p for p in tree if sandbox.process_state(p) not in (None, "Z")]
    assert not left, f"processes of the stopped grading still run: {left}"
    scratch = sorted(p.name for p in tmpdir.iterdir())
    assert not scratch, f"scratch folders left behind: {scratch}"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_to_grade_ends_its_sandboxes_and_cleans_up(tmp_path: Path, sig: signal.Signals) -> None:
    sub = tmp_path / "sub"
    shutil.copytree(REPO / "labs" / "01-signal", sub / "01-signal")
    for c in (sub / "01-signal").glob("*.c"):  # every program sleeps: every test waits for it
        c.write_text("#include <unistd.h>\nint main(void) { for (;;) pause(); }\n")
    _grade_then_signal(["--verbose", "--lab", "1", str(sub)], sig, "test_every_program_builds", tmp_path)


def test_a_signal_to_grade_ends_the_labs_graded_side_by_side_and_cleans_up(tmp_path: Path) -> None:
    """The default view grades labs side by side, each in a thread of grader/grade: SIGTERM stops them all."""
    sub = tmp_path / "sub"
    shutil.copytree(REPO / "labs" / "01-signal", sub / "01-signal")
    for c in (sub / "01-signal").glob("*.c"):
        c.write_text("#include <unistd.h>\nint main(void) { for (;;) pause(); }\n")
    shutil.copytree(REPO / "solutions" / "03-fasync-button", sub / "03-fasync-button")
    _grade_then_signal(["--fresh", str(sub)], signal.SIGTERM, "lab 1: starting", tmp_path, delay=4.0)


def test_a_signal_to_grade_ends_the_vm_and_cleans_up(tmp_path: Path) -> None:
    _grade_then_signal(["--verbose", "--lab", "3", str(REPO / "solutions")], signal.SIGTERM, "test_buttonwatch_builds",
                       tmp_path)


# --- where the repository is ----------------------------------------------------------------------

def test_a_copy_in_a_folder_only_its_owner_can_enter_grades_a_vm_lab(tmp_path: Path) -> None:
    """As root, a clone under /root (mode 0700) or in `mktemp -d`: the sandbox's user cannot traverse it.
    The copy also carries the kernel cache from its old place (the headers' Makefile must not point there)."""
    private = Path(tempfile.mkdtemp(prefix="workbook-private-"))
    try:
        os.chmod(private, 0o700)
        copy = private / "workbook"
        shutil.copytree(REPO, copy, symlinks=True, ignore=shutil.ignore_patterns(
            ".git", "cache", "out", "__pycache__", "build", "node_modules", ".pytest_cache"))
        shutil.copytree(REPO / "vm" / "cache", copy / "vm" / "cache", symlinks=True,
                        copy_function=os.link if _same_fs(REPO, private) else shutil.copy2)
        # As an older fetch left it: the headers' Makefile naming the -common headers by the old, absolute path.
        version = (copy / "vm" / "cache" / "current").read_text().strip()
        mk = copy / "vm" / "cache" / version / "kdir" / "Makefile"
        common = next((REPO / "vm" / "cache" / version / "root" / "usr" / "src").glob("*-common"))
        mk.unlink()
        mk.write_text(f"include {common}/Makefile\n")
        res = subprocess.run([str(copy / "grader" / "grade"), "--lab", "3", "--quiet", "--out", str(private / "out"),
                              str(copy / "solutions")], capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, f"grading lab 3 in a private copy failed:\n{res.stdout[-3000:]}\n{res.stderr[-2000:]}"
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _same_fs(a: Path, b: Path) -> bool:
    return os.stat(a).st_dev == os.stat(b).st_dev
