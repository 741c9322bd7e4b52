"""The student's loop: `make grade` keeps each lab's results while nothing they depend on changed
(gradelib/resultcache.py), shows the short view (gradelib/view.py), and `make watch` grades a lab
again at each save (tools/watch.py).

The cache's key is checked input kind by input kind on a small tree of its own; the flow through
grader/grade's main() with a stand-in for the grading (it counts what is graded); the watch for
real, on one test of lab 1's starter.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gradelib import cli, resultcache
from gradelib.cli import REPO, Summary

ENV = "format 1\nkernel A"


def _tree(root: Path) -> tuple[Path, Path]:
    """A repository with two labs' tests, a grader module and a kernel, and a submission of both labs."""
    for rel, text in {"grader/tests/test_lab01_one.py": "t1", "grader/tests/test_lab02_two.py": "t2",
                      "grader/gradelib/lab.py": "g", "driver/board.c": "b", "vm/machine.py": "m",
                      "vm/cache/current": "6.1.0-1-amd64\n", "vm/cache/6.1.0-1-amd64/complete": "6.1.1-1\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    sub = root / "sub"
    for lab, name in ((1, "01-one"), (2, "02-two")):
        (sub / name).mkdir(parents=True)
        (sub / name / "prog.c").write_text(f"int main(void) {{ return {lab}; }}\n")
    return root, sub


def _keys(root: Path, sub: Path) -> dict[int, str | None]:
    env = resultcache.environment("Sandbox: test", 1.0, root)
    shared = resultcache.shared_digest(root)
    return {n: resultcache.key(sub, n, env, shared, root) for n in resultcache.labs(root)}


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    return _tree(tmp_path)


def test_a_changed_lab_file_changes_that_labs_key_only(tree: tuple[Path, Path]) -> None:
    root, sub = tree
    before = _keys(root, sub)
    (sub / "01-one" / "prog.c").write_text("int main(void) { return 0; }\n")
    after = _keys(root, sub)
    assert after[1] != before[1] and after[2] == before[2]
    (sub / "01-one" / "notes.h").write_text("#define X 1\n")
    assert _keys(root, sub)[1] != after[1], "a new file in the lab's folder must count"


def test_what_a_build_leaves_in_the_lab_folder_changes_no_key(tree: tuple[Path, Path]) -> None:
    root, sub = tree
    before = _keys(root, sub)
    (sub / "01-one" / "prog").write_bytes(b"\x7fELF" + bytes(100))  # the program `make` built there
    (sub / "01-one" / "prog.o").write_bytes(b"object")
    (sub / "01-one" / ".prog.o.cmd").write_text("cmd")
    assert _keys(root, sub) == before


def test_a_changed_test_file_changes_that_labs_key_only(tree: tuple[Path, Path]) -> None:
    root, sub = tree
    before = _keys(root, sub)
    (root / "grader/tests/test_lab02_two.py").write_text("t2, stricter")
    after = _keys(root, sub)
    assert after[2] != before[2] and after[1] == before[1]


@pytest.mark.parametrize("rel", ["grader/gradelib/lab.py", "driver/board.c", "vm/machine.py"])
def test_a_changed_grader_module_board_or_vm_changes_every_key(tree: tuple[Path, Path], rel: str) -> None:
    root, sub = tree
    before = _keys(root, sub)
    (root / rel).write_text("changed")
    after = _keys(root, sub)
    assert all(after[n] != before[n] for n in before)


def test_another_guest_kernel_changes_every_key(tree: tuple[Path, Path]) -> None:
    root, sub = tree
    before = _keys(root, sub)
    (root / "vm/cache/6.1.0-1-amd64/complete").write_text("6.1.2-1\n")  # the same series, a newer build
    after = _keys(root, sub)
    assert all(after[n] != before[n] for n in before)
    assert resultcache.environment("s", 1.0, root) != resultcache.environment("s", 0.5, root)
    assert resultcache.environment("s", 1.0, root) != resultcache.environment("t", 1.0, root)


def _result(lab: int, passed: bool = True, name: str = "test_it_works") -> dict:
    return {"nodeid": f"tests/x.py::{name}", "name": name, "lab": lab, "folder": f"{lab:02d}-x", "task": 1,
            "points": 10, "hidden": False, "prereq": False, "outcome": "passed" if passed else "failed",
            "message": "" if passed else "it does not work", "duration": 0.1, "detail": ""}


def test_an_entry_is_used_only_for_its_submission_lab_key_and_format(tmp_path: Path) -> None:
    folder, sub = tmp_path / "cache", tmp_path / "sub"
    resultcache.store(folder, sub, 1, "k1", [_result(1)], [], 1.0)
    assert resultcache.load(folder, sub, 1, "k1") is not None
    assert resultcache.load(folder, sub, 1, "k2") is None, "another key"
    assert resultcache.load(folder, tmp_path / "other", 1, "k1") is None, "another submission path"
    assert resultcache.load(folder, sub, 2, "k1") is None, "another lab"
    p = next(folder.iterdir())
    data = json.loads(p.read_text())
    for bad in ({**data, "format": 0}, {**data, "results": [{**_result(1), "lab": 2}]},
                {**data, "results": [{**_result(1), "points": "10"}]}, {**data, "results": []}, [data]):
        p.write_text(json.dumps(bad))
        assert resultcache.load(folder, sub, 1, "k1") is None, f"a malformed entry was used: {str(bad)[:80]}"
    p.write_bytes(b"\xff\x00 not json")
    assert resultcache.load(folder, sub, 1, "k1") is None
    real = tmp_path / "elsewhere.json"
    real.write_text(json.dumps(data))
    p.unlink()
    p.symlink_to(real)
    assert resultcache.load(folder, sub, 1, "k1") is None, "an entry behind a symbolic link was used"


class FakeGrading:
    """Stands in for run_grading(): grades instantly, every test passing unless told, and counts."""

    def __init__(self) -> None:
        self.graded: list[int] = []
        self.passing = True

    def __call__(self, submission: Path, lab: int | None = None, *args: object, **kw: object) -> Summary:
        assert lab is not None, "the student's loop grades lab by lab"
        self.graded.append(lab)
        r = [_result(lab, self.passing)]
        return Summary(score=10 if self.passing else 0, max_score=10, results=r, seconds=0.01)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeGrading:
    f = FakeGrading()
    monkeypatch.setattr(cli, "run_grading", f)
    return f


def _grade(sub: Path, out: Path, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    code = cli.main([*args, "--out", str(out), str(sub)])
    return code, capsys.readouterr().out


@pytest.fixture
def submission(tmp_path: Path) -> Path:
    sub = tmp_path / "sub"
    for lab in resultcache.labs():
        shutil.copytree(REPO / "labs" / next(p.name for p in (REPO / "labs").glob(f"{lab:02d}-*")),
                        sub / f"{lab:02d}-lab", ignore=shutil.ignore_patterns("*.md", "*.svg"))
    return sub


def test_an_unchanged_lab_is_not_graded_again_and_says_since_when(fake: FakeGrading, submission: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    code, first = _grade(submission, out, capsys)
    assert code == 0 and sorted(fake.graded) == resultcache.labs()
    fake.graded.clear()
    code, again = _grade(submission, out, capsys)
    assert code == 0 and fake.graded == [], f"unchanged labs were graded again: {fake.graded}"
    assert "every lab's files were graded before" in again and "same files as at" in again, again
    (submission / "02-lab" / "extra.c").write_text("/* a new file */\n")
    code, third = _grade(submission, out, capsys)
    assert fake.graded == [2], f"only lab 2 changed, but {fake.graded} were graded"
    assert json.loads((out / "results.json").read_text())["score"] == 10 * len(resultcache.labs())


def test_fresh_grades_every_lab_anew(fake: FakeGrading, submission: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    _grade(submission, out, capsys)
    fake.graded.clear()
    _grade(submission, out, capsys, "--fresh")
    assert sorted(fake.graded) == resultcache.labs()


@pytest.mark.parametrize("args", [("--repeat", "2"), ("--lab", "1", "--task", "1"), ("-k", "test_it"), ("--verbose",)])
def test_repeat_task_k_and_verbose_never_read_the_cache(fake: FakeGrading, submission: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
                                                         args: tuple[str, ...]) -> None:
    monkeypatch.setattr(resultcache, "load", lambda *a, **k: pytest.fail("the cache was read"))
    monkeypatch.setattr(cli, "run_grading", lambda sub, lab=None, *a, **k: Summary(
        score=10, max_score=10, results=[_result(lab or 1)], text="table"))
    _grade(submission, tmp_path / "out", capsys, *args)


def test_the_instructors_paths_never_use_the_cache() -> None:
    """grade-all and the Gradescope autograder grade through run_grading(), which knows no cache."""
    for module in ("batch.py", "autograder.py"):
        assert "resultcache" not in (REPO / "grader" / "gradelib" / module).read_text(), module
    import inspect
    assert "resultcache" not in inspect.getsource(cli.run_grading)


def test_a_forged_entry_gives_no_points(fake: FakeGrading, submission: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    """Full marks written where the cache is, but not for what is there now (another key), and an
    entry planted in the submission folder itself: both are graded anew, and fail."""
    out = tmp_path / "out"
    fake.passing = False
    _grade(submission, out, capsys, "--lab", "1")
    entry = next((out / "cache").iterdir())
    data = json.loads(entry.read_text())
    forged = {**data, "key": "0" * 64, "results": [_result(1)]}
    entry.write_text(json.dumps(forged))
    (submission / "cache").mkdir()
    (submission / "cache" / entry.name).write_text(json.dumps({**data, "results": [_result(1)]}))
    (submission / "01-lab" / entry.name).write_text(json.dumps({**data, "results": [_result(1)]}))
    fake.graded.clear()
    code, text = _grade(submission, out, capsys, "--lab", "1")
    assert fake.graded == [1] and code == 1
    assert json.loads((out / "results.json").read_text())["score"] == 0


def test_the_short_view_shows_the_first_unfinished_labs_failures_and_the_next_step() -> None:
    from gradelib.view import SCREEN_ROWS, render_short, rows
    results = [_result(1), _result(2, False, "test_a_press_is_counted"), _result(2, False, "test_a_release_too"),
               _result(3, False, "test_lab_three_fails")]
    for r in results:
        r["folder"] = {1: "01-signal", 2: "02-sigaction", 3: "03-fasync-button"}[r["lab"]]
    s = Summary(score=10, max_score=40, results=results)
    text = render_short(s, cli.Rerun(make=True))
    assert "make grade LAB=2 TEST=test_a_press_is_counted" in text and "make grade LAB=2 TEST=test_a_release_too" in text
    assert "test_lab_three_fails" not in text, "only the first unfinished lab's failures are listed"
    assert "Next step: Lab 2, Task 1" in text and "it does not work" in text
    assert rows(text) <= SCREEN_ROWS


def test_failing_tests_that_do_not_fit_one_screen_give_way_to_their_tasks_command() -> None:
    """An untouched lab with many tests: the last tasks' tests are replaced by one line per task that
    says how many fail and grades that task; the first task keeps its tests, and the header says so."""
    from gradelib.view import render_short, rows
    results = []
    for task in (1, 2, 3):
        for i in range(12):
            r = _result(1, False, f"test_task{task}_number_{i}")
            r.update(folder="01-signal", task=task, message=f"cause {task}.{i}")
            results.append(r)
    s = Summary(score=0, max_score=360, results=results)
    text = render_short(s, cli.Rerun(make=True), budget=40)
    assert rows(text) <= 40, text
    assert "make grade LAB=1 TEST=test_task1_number_0" in text, "the first task's tests stay"
    assert "12 failing tests: make grade LAB=1 TASK=3" in text and "test_task3_number_0" not in text, text
    assert "or one task's tests" in text, "the header says what a task's line reruns"
    roomy = render_short(s, cli.Rerun(make=True), budget=200)
    assert "TASK=" not in roomy and "each command reruns one test" not in roomy, roomy


def _left_behind(top: Path) -> list[str]:
    """Processes whose command line names a path below `top` (the grader, its pytest, their programs)."""
    res = subprocess.run(["pgrep", "-af", str(top)], capture_output=True, text=True)
    return [ln for ln in res.stdout.splitlines() if "pgrep" not in ln]


def test_off_a_terminal_a_long_test_is_named_every_heartbeat_and_notes_name_their_lab_once() -> None:
    """A student's pipe (CI, a log) must not stay silent while a VM test waits: after `heartbeat` seconds
    without a line, the lab's current test is printed; a test that starts prints nothing by itself."""
    import io

    from gradelib.view import Live
    out = io.StringIO()
    live = Live(stream=out, tty=False, heartbeat=1.0)
    live.say(3, "lab 3: booting the VM ...")
    live.testing(3, "test_a_press_sends_sigio_to_the_registered_owner")
    assert out.getvalue() == "  lab 3: booting the VM ...\n"
    time.sleep(2.5)
    live.finish(3, "0/100 in 3 s")
    live.clear()
    lines = out.getvalue().splitlines()
    assert any(ln.startswith("  lab 3: test_a_press_sends_sigio_to_the_registered_owner") for ln in lines), lines
    assert lines[-1] == "  lab 3: 0/100 in 3 s" and not any("lab 3: lab 3" in ln for ln in lines), lines


def test_watch_grades_again_after_a_save_and_stops_cleanly(tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    shutil.copytree(REPO / "labs" / "01-signal", sub / "01-signal")
    test = "test_sigint_stops_the_worker_with_a_summary_and_exit_0"
    log = open(tmp_path / "watch.log", "w+")
    (tmp_path / "tmp").mkdir()  # the gradings' scratch folders, so that what they leave can be found
    p = subprocess.Popen([sys.executable, str(REPO / "tools" / "watch.py"), "--lab", "1", "--test", test,
                          "--out", str(tmp_path / "out"), str(sub)], stdout=log, stderr=subprocess.STDOUT,
                         start_new_session=True, env=dict(os.environ, TMPDIR=str(tmp_path / "tmp")))

    def wait_for(text: str, count: int, limit: float = 300) -> str:
        end = time.monotonic() + limit
        while time.monotonic() < end:
            seen = (tmp_path / "watch.log").read_text()
            if seen.count(text) >= count:
                return seen
            assert p.poll() is None, f"the watch ended:\n{seen}"
            time.sleep(0.2)
        pytest.fail(f"no {text!r} x{count} within {limit} s:\n{(tmp_path / 'watch.log').read_text()}")

    try:
        wait_for("waiting for a change", 1)
        (sub / "01-signal" / "worker.o").write_bytes(b"not a save")  # a build product: no grading
        with open(sub / "01-signal" / "worker.c", "a") as f:
            f.write("/* saved */\n")
        seen = wait_for("waiting for a change", 2)
        assert "worker.c changed: grading lab 1 again" in seen and "worker.o" not in seen
        assert seen.count("Grading lab 1") == 2
        with open(sub / "01-signal" / "worker.c", "a") as f:  # stopped in the middle of a grading
            f.write("/* saved again */\n")
        wait_for("Grading lab 1", 3)
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=60) == 0
        assert "watch: stopped" in (tmp_path / "watch.log").read_text()
        time.sleep(0.5)
        assert not _left_behind(tmp_path), f"left behind: {_left_behind(tmp_path)}"
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        log.close()
