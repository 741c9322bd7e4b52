"""How `make test` spreads the project's own tests over processes (pytest-xdist, --dist loadgroup).

- The tests of one module run in one process, one after another: most modules share a module-scoped
  fixture (a VM, a grading of the solutions, a class of submissions) that is set up once.
- The hostile cases are independent gradings: each one goes to whichever process is free.
- The longest units are handed out first (LONGEST), so that no long one starts last and runs alone.
- Tests marked `alone` are not run in that pass: `make test` runs them afterwards, one at a time.  A fork
  bomb fills the process count of the sandbox's user, which every grading side by side shares.

Without xdist (pytest run by hand) the markers change nothing: every test runs, in one process.
"""
from __future__ import annotations

import pytest

SPREAD = {"test_hostile"}  # modules whose tests share nothing: one unit per test
# Modules (and hostile cases) roughly in order of their running time on 2 cores, the longest first.
LONGEST = ["test_proof", "test_autograder", "test_batch", "test_containment", "test_student_loop",
           "[lab3-", "[lab4-", "[lab5-", "[lab6-", "[lab2-", "test_board", "test_sigsafe", "test_vm"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "alone: not run beside other tests (make test runs it in a pass of its own)")
    # xdist's own marker, named here for a run without xdist (-p no:xdist), where pytest would warn of it
    config.addinivalue_line("markers", "xdist_group(name): the tests of one group run in one process")


def _rank(item: pytest.Item) -> int:
    for i, key in enumerate(LONGEST):
        if key in item.nodeid:
            return i
    return len(LONGEST)


@pytest.hookimpl(tryfirst=True)  # before xdist turns the group marker into the unit it schedules
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.module.__name__ not in SPREAD:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
    items.sort(key=_rank)  # stable: a module's tests keep their order
