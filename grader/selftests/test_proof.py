"""Proof that the graded tests mean something.

- the reference solutions score full marks, every test run three times;
- the untouched starter code (labs/) fails every graded test: a graded test
  that passes on the starter cannot tell a student's work from no work, and
  is named here as a defect (prerequisites such as "it builds" are exempt);
- each chapter's task headings carry the points its tests carry.
"""
from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest

from gradelib import resultcache
from gradelib.cli import REPO, Summary, combined, run_grading, task_titles
from gradelib.sandbox import mode_line


@pytest.fixture(scope="module")
def gradings() -> dict[str, Summary]:
    """Both editions, each lab graded on its own, two gradings at a time (as make grade grades labs side
    by side): each VM is one QEMU thread, and the longest labs start first, so that no long one runs
    alone at the end."""
    labs = resultcache.labs()
    jobs = [(ed, n) for n in reversed(labs) for ed in ("solutions", "starter")]  # the VM labs, 6 to 3, first
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = {job: pool.submit(run_grading, REPO / ("labs" if job[0] == "starter" else "solutions"), job[1],
                                 repeat=3 if job[0] == "solutions" else 1) for job in jobs}
        return {ed: combined([done[(ed, n)].result() for n in labs], mode_line()) for ed in ("solutions", "starter")}


@pytest.fixture(scope="module")
def solutions(gradings: dict[str, Summary]) -> Summary:
    return gradings["solutions"]


@pytest.fixture(scope="module")
def starter(gradings: dict[str, Summary]) -> Summary:
    return gradings["starter"]


def test_solutions_score_full_marks_three_times_in_a_row(solutions: Summary) -> None:
    failed = [f"{r['nodeid']}: {r['message']}" for r in solutions.results if r["outcome"] != "passed"]
    assert not failed, "the reference solutions fail:\n" + "\n".join(failed)
    assert solutions.full_marks and solutions.max_score > 0


def test_every_graded_test_fails_on_the_untouched_starter(starter: Summary) -> None:
    passing = [r["nodeid"] for r in starter.results if not r["prereq"] and r["outcome"] == "passed"]
    assert not passing, "graded tests that pass on the untouched starter (defects):\n" + "\n".join(passing)
    assert starter.score == 0


def test_the_starter_builds(starter: Summary) -> None:
    broken = [f"{r['nodeid']}: {r['message']}" for r in starter.results if r["prereq"] and r["outcome"] != "passed"]
    assert not broken, "the starter code must build and run:\n" + "\n".join(broken)


def test_chapter_task_points_match_the_tests(solutions: Summary) -> None:
    per_task: dict[tuple[str, int], int] = defaultdict(int)
    for r in solutions.results:
        if not r["prereq"]:
            per_task[(r["folder"], r["task"])] += r["points"]
    problems = []
    for folder in sorted({f for f, _ in per_task}):
        titles = task_titles(folder)
        tasks = {t for f, t in per_task if f == folder}
        for t in sorted(tasks | set(titles)):
            want = titles.get(t, (None, None))[1]
            got = per_task.get((folder, t), 0)
            if want != got:
                problems.append(f"labs/{folder}/README.md: Task {t} says {want} points, its tests carry {got}")
    assert not problems, "\n".join(problems)


def test_the_starters_short_view_fits_one_screen(starter: Summary) -> None:
    """What `make grade` prints for the untouched starter (the table, the first lab's failures, the
    next step) fits 60 rows of 80 columns, the lines that wrap counted."""
    from gradelib.cli import Rerun
    from gradelib.view import OTHER_ROWS, SCREEN_ROWS, render_short, rows
    text = render_short(starter, Rerun(make=True))
    assert rows(text) + OTHER_ROWS <= SCREEN_ROWS, f"{rows(text)} rows:\n{text}"
    assert "Next step: Lab 1, Task 1" in text and "make grade LAB=1 TEST=" in text
