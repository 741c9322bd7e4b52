"""The sandbox's fallback (no namespaces: an unprivileged container such as Gradescope's or a CI
job's), forced here with GRADER_SANDBOX=none, contains what it claims (gradelib/sandbox.py):

- the program runs as the sandbox's user (GRADER_SANDBOX_USER when it names one other than root,
  else nobody), not as the grader;
- it cannot write the grader's files or the results;
- it has the same rlimits as in bubblewrap;
- the watchdog still stops a tree that eats memory;
- nothing it starts outlives it, nor the grader, however the grader ends (the keeper);
- the grader says which mode it used.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from gradelib import sandbox
from gradelib.cli import REPO
from gradelib.sandbox import Contained, Limits

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the fallback's own user needs a grader that is root")


@pytest.fixture(autouse=True)
def fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADER_SANDBOX", "none")
    monkeypatch.setattr(sandbox, "_bwrap_ok", None)  # probe again, with the setting
    monkeypatch.setattr(sandbox, "_user", None)
    assert not sandbox.bwrap_usable()


def _run(argv: list[str], cwd: Path, limits: Limits | None = None, timeout: float = 20) -> sandbox.Exit:
    sandbox.make_writable(cwd)
    c = Contained(argv, cwd=cwd, writable=[cwd], env={"PATH": "/usr/bin:/bin", "HOME": str(cwd)},
                  limits=limits or Limits(), stdin=False)
    return c.wait(timeout=timeout)


def _gone(pids: list[int], within: float) -> list[int]:
    """The pids still alive (not zombies) after waiting up to `within` seconds for them to end."""
    deadline = time.monotonic() + within
    while True:
        alive = [p for p in pids if sandbox.process_state(p) not in (None, "Z", "X")]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def test_the_mode_line_says_fallback_and_why() -> None:
    line = sandbox.mode_line()
    assert line.startswith("Sandbox: fallback without namespaces (GRADER_SANDBOX=none)"), line
    assert "user nobody" in line and "container is the outer boundary" in line


def test_the_program_runs_as_the_sandbox_user_not_as_the_grader(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    ex = _run(["/bin/sh", "-c", "id -u; id -g"], tmp_path / "run")
    assert ex.stdout.decode().split() == [str(sandbox.NOBODY)] * 2, ex
    # A dedicated user (the Gradescope archive's setup.sh makes `student`): here, a system user every
    # Debian has.  Root is never one.
    monkeypatch.setenv("GRADER_SANDBOX_USER", "daemon")
    monkeypatch.setattr(sandbox, "_user", None)
    ex = _run(["/bin/sh", "-c", "id -un"], tmp_path / "run2")
    assert ex.stdout.decode().strip() == "daemon", ex
    monkeypatch.setenv("GRADER_SANDBOX_USER", "root")
    monkeypatch.setattr(sandbox, "_user", None)
    ex = _run(["/bin/sh", "-c", "id -u"], tmp_path / "run3")
    assert ex.stdout.decode().strip() == str(sandbox.NOBODY), ex


def test_the_program_cannot_write_the_graders_files_or_the_results(tmp_path: Path) -> None:
    # As the grader lays them out: its files (a copy of gradelib, root's, as unpacked by setup.sh) and
    # the results folder (root's, 0755), next to the program's own folder.
    grader = tmp_path / "source" / "gradelib"
    shutil.copytree(REPO / "grader" / "gradelib", grader, ignore=shutil.ignore_patterns("__pycache__"))
    results = tmp_path / "results"
    results.mkdir()
    (results / "results.json").write_text('{"score": 0}\n')
    os.chmod(tmp_path, 0o755)
    before = {p: p.read_bytes() for p in [*grader.iterdir(), results / "results.json"]}
    script = (f"echo '{{\"score\": 100}}' > {results}/results.json; echo forged > {results}/forged.json; "
              f"echo 'import os' >> {grader}/cli.py; rm -f {grader}/sandbox.py; touch {grader}/new.py; "
              f"for f in {REPO}/grader/gradelib/sandbox.py {REPO}/grader/gradelib {REPO}/grader/tests; do "
              f"test -w $f && echo WRITABLE $f; done; echo end")
    ex = _run(["/bin/sh", "-c", script], tmp_path / "run")
    out = ex.stdout.decode()
    assert out.strip().endswith("end") and "WRITABLE" not in out, out
    assert {p: p.read_bytes() for p in before} == before
    assert not (results / "forged.json").exists() and not (grader / "new.py").exists()
    assert b"Permission denied" in ex.stderr


@pytest.mark.alone  # its bound counts the sandbox user's tasks: none of another test's may come or go
def test_the_program_has_the_same_rlimits_as_in_the_sandbox(tmp_path: Path) -> None:
    lim = Limits(cpu_seconds=7, processes=33, file_size=5 << 20, open_files=77, address_space=1 << 30)
    ex = _run(["/bin/cat", "/proc/self/limits"], tmp_path / "run", lim)
    rows = {line[:26].strip(): line[26:].split() for line in ex.stdout.decode().splitlines()[1:]}
    assert rows["Max cpu time"][:2] == ["7", "8"], rows
    assert rows["Max file size"][:2] == [str(5 << 20)] * 2
    assert rows["Max open files"][:2] == ["77", "77"]
    assert rows["Max address space"][:2] == [str(1 << 30)] * 2
    assert rows["Max core file size"][:2] == ["0", "0"]
    nproc = int(rows["Max processes"][0])
    # the sandbox user's tasks counted at the start, plus room for gradings side by side (sandbox.CONCURRENT_TASKS)
    assert 33 <= nproc <= 33 + sandbox.CONCURRENT_TASKS + sandbox._count_processes(sandbox.NOBODY), rows["Max processes"]


def test_the_watchdog_stops_a_tree_that_eats_memory(tmp_path: Path) -> None:
    ex = _run(["/bin/sh", "-c", "exec /usr/bin/perl -e '$x = \"a\" x (2 * 1024 ** 3); sleep 30'"], tmp_path / "run",
              Limits(address_space=None, memory=256 << 20), timeout=60)
    assert ex.killed_for and "256 MiB of memory" in ex.killed_for, ex


# A program that leaves sleepers behind: one in the background, one in a session of its own, one
# double-forked (an orphan), each writing its pid; then it waits, or exits.
LEAVER = ("sleep 300 & echo $! >> pids; setsid sleep 300 & echo $! >> pids; "
          "( sleep 300 & echo $! >> pids ); echo $$ >> pids; echo ready; ")


def _pids(folder: Path, n: int) -> list[int]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            pids = [int(x) for x in (folder / "pids").read_text().split()]
            if len(pids) >= n:
                return pids
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    pytest.fail(f"the program did not write {n} pids")


def test_what_a_program_leaves_behind_dies_when_it_exits(tmp_path: Path) -> None:
    run = tmp_path / "run"
    ex = _run(["/bin/sh", "-c", LEAVER + "exit 3"], run)
    assert ex.exitcode == 3, ex
    pids = _pids(run, 4)
    assert not _gone(pids, 5), "processes the program left outlived it"


def test_everything_a_program_started_dies_with_the_grader(tmp_path: Path) -> None:
    """The grader (here a small Python process) is killed with SIGKILL while its program runs: the
    program and all it started, in its session or not, end too."""
    run = tmp_path / "run"
    grader = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom pathlib import Path\nfrom gradelib import sandbox\n"
         f"run = Path({str(run)!r})\nsandbox.make_writable(run)\n"
         f"c = sandbox.Contained(['/bin/sh', '-c', {LEAVER + 'exec sleep 300'!r}], cwd=run, writable=[run],\n"
         "    env={'PATH': '/usr/bin:/bin'}, limits=sandbox.Limits(), stdin=False)\n"
         "print(c.popen.pid, flush=True)\ntime.sleep(600)\n"],
        cwd=REPO / "grader", env=dict(os.environ, PYTHONPATH=str(REPO / "grader"), GRADER_SANDBOX="none"),
        stdout=subprocess.PIPE, text=True)
    try:
        keeper = int(grader.stdout.readline())
        pids = _pids(run, 4)
        assert not [p for p in pids if sandbox.process_state(p) in (None, "Z")], "the program is not running"
        grader.kill()
        grader.wait()
        assert not _gone([*pids, keeper], 10), "processes of the program outlived its grader"
    finally:
        if grader.poll() is None:
            grader.kill()


def test_a_folder_the_sandbox_user_cannot_enter_is_named() -> None:
    """A clone under /root (0700): the fallback's user cannot reach the kernel headers in it, and the
    module build says which folder stops it (gradelib/vmlab.py), not only make's `Permission denied`.
    (Not in pytest's tmp_path: its folders are 0700 themselves.)"""
    top = Path(tempfile.mkdtemp(prefix="fallback-reach-", dir="/var/tmp"))
    try:
        closed = top / "home"
        headers = closed / "clone" / "vm" / "cache" / "headers"
        headers.mkdir(parents=True)
        for d in (top, *top.rglob("*")):
            os.chmod(d, 0o755)
        os.chmod(closed, 0o700)
        assert sandbox.closed_to_user(headers) == closed
        os.chmod(closed, 0o711)  # search permission is enough
        assert sandbox.closed_to_user(headers) is None
    finally:
        shutil.rmtree(top, ignore_errors=True)
