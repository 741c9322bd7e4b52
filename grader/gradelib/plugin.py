"""The grader's pytest plugin: points on tests, the `lab` fixture, --lab,
--repeat, a per-test timeout, and a JSON record of every graded result that
grader/grade turns into the table, results.json and the next step.

Every test under grader/tests/ is either @graded(task=..., points=...) or
@prereq (a prerequisite such as "it builds": no points).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest
from _pytest.runner import runtestprotocol

from .lab import LabBuild, LabSpec, set_library_dir
from .progress import set_channel
from .timescale import scale
from .sandbox import inert, kill_everything
from .vmlab import vm, vm_lab  # noqa: F401  (fixtures of the labs graded in the VM)


class TestTimeout(Exception):
    """Raised in the test by the per-test alarm."""


@dataclass
class Result:
    nodeid: str
    name: str
    lab: int
    folder: str
    task: int
    points: int
    hidden: bool
    prereq: bool
    outcome: str  # passed | failed
    message: str
    duration: float
    detail: str = ""  # for report.txt only: the kernel's timeline of a failed VM test


class GraderState:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        sub = config.getoption("submission")
        self.submission = Path(sub).resolve() if sub else None
        given = config.getoption("scratch")
        self.own_scratch = given is None
        self.scratch = Path(given) if given else Path(tempfile.mkdtemp(prefix="grade-"))
        os.chmod(self.scratch, 0o755)
        # the grader's own builds: a folder shared with the gradings beside this one (cli.shared_libs), or its own
        set_library_dir(Path(os.environ["GRADER_LIBS"]) if os.environ.get("GRADER_LIBS") else self.scratch / "libs")
        self.builds: dict[int, LabBuild] = {}
        self.results: dict[str, Result] = {}
        fd = config.getoption("progress_fd")
        self.progress = os.fdopen(fd, "w", buffering=1, closefd=False) if fd is not None else None
        set_channel(self.progress)

    def build_for(self, spec: LabSpec) -> LabBuild:
        if self.submission is None:
            pytest.fail("no submission given: run the tests through grader/grade (or pass --submission PATH)",
                        pytrace=False)
        b = self.builds.get(spec.number)
        if b is None:
            b = self.builds[spec.number] = LabBuild(spec, self.submission, self.scratch)
        return b


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("grader")
    g.addoption("--submission", default=None, help="the folder with the labs to grade (a scratch copy)")
    g.addoption("--lab", type=int, default=None, help="grade only this lab")
    g.addoption("--task", type=int, default=None, help="grade only this task (and its lab's prerequisites)")
    g.addoption("--repeat", type=int, default=1, help="run every test N times; it passes only if all pass")
    g.addoption("--results-json", default=None, help="write graded results here")
    g.addoption("--progress-fd", type=int, default=None, help="write one line per finished test to this fd")
    g.addoption("--test-timeout", type=float, default=120.0, help="seconds one test may take")
    g.addoption("--scratch", default=None, help="build and run in this folder")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "graded(task, points, hidden=False): a graded test")
    config.addinivalue_line("markers", "prereq: a prerequisite check with no points")
    config._grader = GraderState(config)  # type: ignore[attr-defined]

    def stop(signum: int, frame: Any) -> None:
        # grader/grade is stopping us: kill every contained program now (QEMU dies with this
        # process through its death signal), then unwind like Ctrl-C.
        kill_everything()
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)


def pytest_unconfigure(config: pytest.Config) -> None:
    st: GraderState | None = getattr(config, "_grader", None)
    if st is None:
        return
    for b in st.builds.values():
        b.cleanup()
    path = config.getoption("results_json")
    if path:
        tmp = Path(path + ".tmp")
        tmp.write_text(json.dumps([asdict(r) for r in st.results.values()], indent=1))
        tmp.rename(path)
    if st.own_scratch:
        shutil.rmtree(st.scratch, ignore_errors=True)


def _is_graded_test(item: pytest.Item) -> bool:
    return "tests" in Path(str(item.fspath)).parent.parts[-1:]


def _meta(item: pytest.Item) -> tuple[LabSpec, Any, bool]:
    spec = getattr(item.module, "LAB", None)  # type: ignore[attr-defined]
    return spec, item.get_closest_marker("graded"), item.get_closest_marker("prereq") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    want = config.getoption("lab")
    keep, drop = [], []
    for item in items:
        if not _is_graded_test(item):
            keep.append(item)
            continue
        spec, graded, prereq = _meta(item)
        if not isinstance(spec, LabSpec):
            raise pytest.UsageError(f"{item.nodeid}: the test module must define LAB = LabSpec(...)")
        if graded is None and not prereq:
            raise pytest.UsageError(f"{item.nodeid}: a grader test must be @graded(task=..., points=...) or @prereq")
        task = config.getoption("task")
        in_task = task is None or prereq or (graded is not None and graded.kwargs.get("task") == task)
        (keep if (want is None or spec.number == want) and in_task else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep


@pytest.fixture
def lab(request: pytest.FixtureRequest):
    """The module's lab (LAB = LabSpec(...)), copied from the submission into scratch, built on first use."""
    spec = getattr(request.module, "LAB")
    b = request.config._grader.build_for(spec)
    yield b
    b.cleanup()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    st = getattr(item.config, "_grader", None)
    if st is not None and st.progress is not None:
        st.progress.write(f"TEST {item.name}\n")  # what runs now, for the live line (gradelib/view.py)
    n = item.config.getoption("repeat")
    if n <= 1:
        return None
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    for i in range(n):
        # Between runs, tear down the test's own fixtures but keep its module's
        # (nextitem=item would keep the item set up, and the next run would get
        # no fixture values at all; the parent keeps a module-scoped VM booted).
        reports = runtestprotocol(item, nextitem=nextitem if i == n - 1 else item.parent, log=False)
        if any(r.failed for r in reports):
            for r in reports:
                if r.failed and i > 0:
                    r.sections.append(("repeat", f"failed on run {i + 1} of {n}"))
                    item._grader_repeat_note = f" (it failed on run {i + 1} of {n}: it does not pass reliably)"  # type: ignore[attr-defined]
            break
    for r in reports:
        item.ihook.pytest_runtest_logreport(report=r)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    if not _is_graded_test(item):  # the project's own tests bound their own waits
        yield
        return
    limit = item.config.getoption("test_timeout") * max(1.0, scale())

    def on_alarm(signum: int, frame: Any) -> None:
        raise TestTimeout(f"The test did not finish within {limit:g} s (the grader stopped it).")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _message(call: pytest.CallInfo) -> str:
    exc = call.excinfo
    if exc is None:
        return ""
    v = exc.value
    if isinstance(v, (pytest.fail.Exception, TestTimeout)):
        return str(v)
    if isinstance(v, AssertionError):
        text = str(v)
        head = text.split("\nassert ", 1)[0].strip()
        return head or "assertion failed: " + text.strip()
    if isinstance(v, pytest.skip.Exception):
        return "skipped: " + str(v)
    return f"The test could not complete: {type(v).__name__}: {v}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"_grader_rep_{rep.when}", rep)  # fixtures look at how the test went
    if not _is_graded_test(item):
        return
    st: GraderState = item.config._grader  # type: ignore[attr-defined]
    spec, graded, prereq = _meta(item)
    kw = graded.kwargs if graded is not None else {}
    prev = st.results.get(item.nodeid)
    if rep.when == "setup" or prev is None:
        prev = st.results[item.nodeid] = Result(
            nodeid=item.nodeid, name=item.name, lab=spec.number, folder=spec.folder, task=int(kw.get("task", 0)),
            points=0 if prereq else int(kw.get("points", 0)), hidden=bool(kw.get("hidden", False)),
            prereq=prereq, outcome="failed", message="the test did not run", duration=0.0)
        prev._start = time.monotonic()  # type: ignore[attr-defined]
    if rep.failed or rep.skipped:
        if prev.outcome != "failed" or prev.message == "the test did not run" or rep.when != "teardown":
            prev.outcome = "failed"
            # Messages quote student output, compiler output and the kernel's log: render them inert.
            prev.message = inert(_message(call) + getattr(item, "_grader_repeat_note", ""))
    elif rep.when == "call":
        prev.outcome, prev.message = "passed", ""
    if rep.when == "teardown":
        if prev.outcome == "failed":
            prev.detail = inert(getattr(item, "_grader_detail", ""))  # comm names are the student's
        prev.duration = round(time.monotonic() - getattr(prev, "_start", time.monotonic()), 3)
        if st.progress is not None:
            mark = "PASS" if prev.outcome == "passed" else "FAIL"
            pts = "prereq" if prev.prereq else f"{prev.points if prev.outcome == 'passed' else 0}/{prev.points}"
            st.progress.write(f"{mark} {prev.lab} {prev.task} {pts} {prev.name}\n")
