"""What a student and an instructor see around the grades (the grader's console, files and tools).

- the console names report.txt and gives, for each failing test, the one command that reruns it
  (`make grade LAB= TEST=` when graded through make, `grader/grade --lab -k` otherwise); a task
  selected with TASK= shows every failing test's message;
- results.json carries Gradescope's fields; a grader that cannot run writes none and exits 2;
- grader/grade on a clone without the VM's kernel fetches it, as `make grade` does;
- make doctor says what is there and how to fix what is not;
- `make vm LAB=3` a second time builds nothing, and its banner explains the PCI line;
- what `make` writes in the lab folders is ignored by git;
- under load, timeouts stretch with the machine: the solutions still get full marks.
(The Oops table, the file:line mapping and the right diagnoses are hostile cases: test_hostile.py.)
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from gradelib.cli import REPO

GRADE = REPO / "grader" / "grade"
STARTER = REPO / "labs"


def _grade(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([str(GRADE), *args], capture_output=True, text=True, cwd=cwd, timeout=900,
                          env=dict(os.environ, **(env or {})))


@pytest.fixture(scope="module")
def starter_lab1(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("out")
    return _grade("--lab", "1", "--out", str(out), str(STARTER)), out


def test_each_failing_test_comes_with_the_command_that_reruns_it(starter_lab1) -> None:
    res, out = starter_lab1
    failing = [(t["name"].split(": ", 1)[1], next((g.split()[1] for g in t["tags"] if g.startswith("task ")), "-"))
               for t in json.loads((out / "results.json").read_text())["tests"] if t["status"] == "failed"]
    assert failing, res.stdout
    for name, task in failing:
        # Its own command, or (when the failing tests do not fit one screen) its task's, with the count.
        n = sum(t == task for _, t in failing)
        assert re.search(rf"^\s+grader/grade --lab 1 -k {name}$", res.stdout, re.M) or \
            re.search(rf"^\s+{n} failing tests: grader/grade --lab 1 --task {task}$", res.stdout, re.M), \
            f"no rerun command for {name} (task {task}):\n{res.stdout}"
    assert "report.txt" in res.stdout


def test_through_make_the_rerun_command_is_make_grade(tmp_path: Path) -> None:
    res = _grade("--lab", "1", "--task", "1", "--out", str(tmp_path), str(STARTER), env={"GRADE_VIA": "make"})
    assert re.search(r"rerun: make grade LAB=1 TEST=test_sigint_stops_the_worker_with_a_summary_and_exit_0$",
                     res.stdout, re.M), res.stdout


def test_one_task_selected_shows_every_failing_tests_message(tmp_path: Path) -> None:
    res = _grade("--lab", "1", "--task", "1", "--out", str(tmp_path), str(STARTER))
    assert res.returncode == 1
    names = re.findall(r"^\s+x (test_\w+)", res.stdout, re.M)
    assert len(names) >= 2 and all(re.search(rf"Failing test: {n}$", res.stdout, re.M) for n in names), res.stdout
    assert "Task 2" not in res.stdout, "only task 1 was selected"


def test_results_json_has_gradescopes_fields(starter_lab1) -> None:
    data = json.loads((starter_lab1[1] / "results.json").read_text())
    assert {"score", "max_score", "execution_time", "output", "output_format", "tests"} <= set(data)
    t = data["tests"][0]
    assert {"name", "number", "score", "max_score", "status", "output", "output_format", "tags", "visibility"} <= set(t)
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", t["number"]) for t in data["tests"])
    assert len({t["number"] for t in data["tests"]}) == len(data["tests"])
    assert any("task 1" in t["tags"] for t in data["tests"])


def test_a_grader_that_cannot_run_says_so_and_leaves_no_results(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text('{"score": 100}')  # a stale file from an earlier run
    res = _grade("--out", str(tmp_path), str(tmp_path / "no-such-folder"))
    assert res.returncode == 2, res.stdout + res.stderr
    assert "not a folder" in res.stderr
    assert not (tmp_path / "results.json").exists(), "a failed grading must not leave a results file"


def test_grade_on_a_clone_without_the_kernel_fetches_it(tmp_path: Path) -> None:
    copy = tmp_path / "workbook"
    shutil.copytree(REPO, copy, symlinks=True, ignore=shutil.ignore_patterns(".git", "cache", "out", "node_modules"))
    version = (REPO / "vm" / "cache" / "current").read_text().strip()
    (copy / "vm" / "cache").mkdir()
    # the downloaded packages are what a fetch would unpack again: keep them, drop the marker of the version in use
    shutil.copytree(REPO / "vm" / "cache" / version, copy / "vm" / "cache" / version, symlinks=True,
                    copy_function=os.link)
    res = subprocess.run([str(copy / "grader" / "grade"), "--lab", "3", "-k", "test_the_module_loads_and_creates_dev_button",
                          "--out", str(tmp_path / "out"), str(copy / "solutions")], capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (copy / "vm" / "cache" / "current").read_text().strip() == version


def test_doctor_says_what_is_missing_and_how_to_fix_it(tmp_path: Path) -> None:
    ok = subprocess.run(["python3", str(REPO / "tools" / "doctor.py")], capture_output=True, text=True,
                        env=dict(os.environ, PATH=f"/usr/bin:{os.environ['PATH']}"))
    assert ok.returncode == 0 and "PROBLEM" not in ok.stdout, ok.stdout
    empty = subprocess.run(["/usr/bin/python3", str(REPO / "tools" / "doctor.py")], capture_output=True, text=True,
                           env=dict(os.environ, WORKBOOK_VM_CACHE=str(tmp_path)))
    assert empty.returncode == 1
    assert re.search(r"PROBLEM.*kernel.*\n\s+fix: make fetch", empty.stdout), empty.stdout


def _make_vm(*args: str) -> str:
    """`make vm ARGS`, as a user at the prompt: wait for it, power off; everything it printed."""
    p = subprocess.Popen(["make", "-s", "vm", *args], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, start_new_session=True)
    seen = b""
    try:
        end = time.monotonic() + 240
        while b"vm:/lab# " not in seen:
            assert time.monotonic() < end, f"no prompt from make vm; it printed:\n{seen[-3000:]!r}"
            chunk = os.read(p.stdout.fileno(), 4096)
            assert chunk, f"make vm ended early:\n{seen[-3000:]!r}"
            seen += chunk
        p.stdin.write(b"poweroff\n")
        p.stdin.flush()
        seen += p.stdout.read()
        assert p.wait(60) == 0, seen[-3000:]
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    return seen.decode(errors="replace")


def test_make_vm_a_second_time_builds_nothing_and_explains_the_pci_line() -> None:
    _make_vm("LAB=3", "SUBMISSION=solutions")
    again = _make_vm("LAB=3", "SUBMISSION=solutions")
    assert "building" not in again, f"the second make vm built again:\n{again[:3000]}"
    assert "unchanged" in again, again[:3000]
    assert "microvm, which has no PCI bus" in again


def test_what_a_student_builds_in_the_lab_folders_is_ignored_by_git(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    shutil.copytree(REPO / "vm" / "cache", clone / "vm" / "cache", symlinks=True, copy_function=os.link)
    for where in ("labs", "solutions"):
        for lab in sorted((clone / where).glob("0*")):
            if (lab / "Makefile").is_file():  # the VM labs: `make` (module and programs)
                res = subprocess.run(["make", "-s", "-C", str(lab)], capture_output=True, text=True, timeout=300)
            else:  # the host labs: each program as the chapter builds it
                for c in lab.glob("*.c"):
                    res = subprocess.run(["gcc", "-o", str(c.with_suffix("")), str(c)], capture_output=True,
                                         text=True, timeout=120)
            assert res.returncode == 0 or where == "labs", f"{lab}: {res.stdout}{res.stderr}"
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True).stdout
    assert not status.strip(), f"build products git would add:\n{status}"


@pytest.mark.alone  # its busy loops would slow every test beside it, not only this grading
def test_under_load_the_solutions_still_get_full_marks(tmp_path: Path) -> None:
    """Two busy loops on a 2-core machine: the grader measures the machine and waits longer."""
    hogs = [subprocess.Popen(["/bin/sh", "-c", "while :; do :; done"]) for _ in range(os.cpu_count() or 2)]
    try:
        res = _grade("--lab", "2", "--quiet", "--out", str(tmp_path), str(REPO / "solutions"))
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    assert res.returncode == 0, res.stdout[-3000:]


def test_a_failed_build_alone_is_the_next_step_never_full_marks() -> None:
    """A module that builds with warnings while every graded test passes (or none was selected)."""
    from gradelib.cli import Summary, render
    msg = "button_driver.c builds, but with warnings; fix them:\n    | button_driver.c:83:13: warning: unused variable"
    s = Summary(score=0, max_score=0, results=[{
        "lab": 3, "folder": "03-fasync-button", "task": 0, "name": "test_the_module_builds_with_no_warnings",
        "points": 0, "prereq": True, "outcome": "failed", "message": msg}])
    text = render(s, STARTER)
    assert not s.full_marks
    assert "full marks" not in text, text
    assert "Next step: Lab 3: test_the_module_builds_with_no_warnings" in text, text
    assert "unused variable" in text, text


@pytest.mark.parametrize("status, syscall, asleep", [
    ("State:\tS (sleeping)\n", "34 0x0 0x0 0x0 0x0 0x0 0x0 0x7ffc 0x7f00", "pause()"),
    ("State:\tS (sleeping)\n", "128 0x7ffc 0x0 0x0 0x8 0x0 0x0 0x7ffc 0x7f00", "sigtimedwait()"),
    ("State:\tS (sleeping)\n", "128 0x7ffc 0x0 0x7ffd 0x8 0x0 0x0 0x7ffc 0x7f00", ""),  # with a timeout
    ("State:\tS (sleeping)\n", "7 0x7ffc 0x1 0xffffffff 0x0 0x0 0x0 0x7ffc 0x7f00", "poll()"),
    ("State:\tS (sleeping)\n", "7 0x7ffc 0x1 0x3e8 0x0 0x0 0x0 0x7ffc 0x7f00", ""),  # poll for 1000 ms
    ("State:\tS (sleeping)\n", "35 0x7ffc 0x0 0x0 0x0 0x0 0x0 0x7ffc 0x7f00", ""),  # nanosleep
    ("State:\tS (sleeping)\n", "61 0xffffffff 0x0 0x0 0x0 0x0 0x0 0x7ffc 0x7f00", ""),  # wait4: a child may end
    ("State:\tR (running)\n", "running", ""),
    ("State:\tS (sleeping)\nSigPnd:\t0000000000000200\nSigBlk:\t0000000000000000\n",
     "34 0x0 0x0 0x0 0x0 0x0 0x0 0x7ffc 0x7f00", ""),  # SIGUSR1 on its way: about to wake
])
def test_a_program_is_asleep_for_good_only_in_a_wait_with_no_timeout(status: str, syscall: str, asleep: str) -> None:
    """What lets a VM test stop waiting for a line early (GuestProc.expect): every thread in such a wait."""
    from gradelib import diagnose
    assert diagnose.untimed_wait(diagnose.parse(status, syscall=syscall)) == asleep


def test_a_program_deadlocked_on_its_own_lock_is_seen_in_a_fraction_of_a_second(tmp_path: Path) -> None:
    """Proc.wait(hang_ends=True), as lab 1's ticker tests use it: a program whose one thread waits in futex()
    for a lock it holds itself is stopped at once, even beside the sanitizers' sleeping background thread,
    and the state shown does not blame that thread (no "waiting for its other thread")."""
    from gradelib import diagnose
    src = tmp_path / "selflock.c"
    src.write_text("#include <pthread.h>\n#include <unistd.h>\nstatic pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;\n"
                   "int main(void) { pthread_mutex_lock(&m); pthread_mutex_lock(&m); return 0; }\n")
    exe = tmp_path / "selflock"
    subprocess.run(["gcc", "-fsanitize=address", "-o", str(exe), str(src)], check=True)
    p = subprocess.Popen([str(exe)], env=dict(os.environ, ASAN_OPTIONS="hard_rss_limit_mb=1024"))
    try:
        st = diagnose.futex_stall(p.pid, 20, settle=0.3)
        assert st is not None and diagnose.untimed_wait(st) == "futex()", st
        assert len(os.listdir(f"/proc/{p.pid}/task")) == 2, "hard_rss_limit_mb starts ASan's background thread"
        assert diagnose.others_only_sleep(p.pid), "ASan's RSS watch is a thread that only sleeps"
        assert "other thread" not in diagnose.snapshot(p.pid).describe()
    finally:
        p.kill()
        p.wait()
