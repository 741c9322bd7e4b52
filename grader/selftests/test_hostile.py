"""The hostile corpus: submissions that hang, crash, fork-bomb, flood, write or
delete outside their folder, block in a handler, ignore SIGTERM, leave a daemon
behind or eat memory.  Each must cost its points with a message that says what
happened; the grader must finish; nothing outside the scratch folder changes;
no process survives.

Host cases: grader/hostile/host/NAME.c replaces every program of a copy of the
lab's starter (so the corpus does not depend on program names).  Prepared
cases: grader/hostile/NAME/EXPECT.json:
    {"lab": N, "score": S, "report_contains": ["..."],   (or "full_marks": true, or "below_full": true)
     "passes": [test names that must pass], "fails": [...], "table_contains": [words on the console],
     "report_lacks": [regular expressions no line of the report may match],
     "select": "a pytest -k expression: grade only these tests (keeps slow cases short)",
     "from": "solutions",                       (optional: start from a copy of that folder's lab)
     "edits": [{"file": F, "find": A, "replace": B, "why": "..."}]}   (each A must occur exactly once)
and any lab folders beside it are the submission as they are.  Edits keep a
defect next to the solution it breaks, instead of a second copy that drifts.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from gradelib.cli import REPO, run_grading

HOSTILE = REPO / "grader" / "hostile"
HOST_LAB = "01-signal"
SCALE = 0.1  # every wait in a hostile run is expected to expire: don't wait 10 s for each
# Cases whose verdict needs real time: the memory hog must fill 1 GiB (page by page, slower under load)
# before a test's wait ends, or the wait, not the watchdog, stops it; the watchdog must see the fork loop's
# process count (its hundreds of processes leave it little of the CPU: a second or two) before the wait ends.
CASE_SCALE = {"exec_hog": 1.0, "forkbomb_setsid": 1.0}

# case -> a pattern the report must contain (how the run ended, in the student's words)
HOST_CASES = {
    "loop": r"did not finish within|more CPU time|an endless loop",
    "forkbomb": r"did not finish within|more CPU time|exited with status|killed by",
    "segfault": r"SIGSEGV|AddressSanitizer|runtime error",
    "compile_error": r"does not compile",
    "flood": r"printed more than",
    "write_outside": r"exited with status 0|did not|Expected",
    "delete_files": r"exited with status 0|did not|Expected",
    "handler_blocks": r"did not finish within|nothing matched",
    "ignores_term": r"did not finish within|nothing matched",
    "escape": r"exited with status 0|Expected",
    "memory_hog": r"exited with status|killed by|did not finish",
    "exits_early": r"had already ended",
    "waits_forged": r"Expected",
    "escapes": r"exited with status 3",
    "link_log": r"exited with status 0|Expected|had already ended",
    "fifo_log": r"exited with status 0|Expected|had already ended",
    "peek": r"exited with status 1",
    "exec_hog": r"more than 1024 MiB of memory",
    "disk_filler": r"wrote more than 64 MiB to disk",
    "disk_filler_shm": r"wrote more than 64 MiB to disk",
    "tmp_files": r"created more than \d+ files",
    "forkbomb_setsid": r"limit of \d+ processes",
}
SECRET = "hostile-secret-5f3a9c"  # in a file only its owner may read: must never reach a report
# Control characters a report may not carry: they could redraw the student's terminal.
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@pytest.fixture
def sentinel(tmp_path: Path) -> Path:
    d = tmp_path / "sentinel"
    d.mkdir()
    (d / "precious.txt").write_text("keep me\n")
    os.chmod(tmp_path, 0o755)
    os.chmod(d, 0o777)  # even a world-writable folder outside scratch stays untouched
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET + "\n")
    os.chmod(secret, 0o600)
    return d


@pytest.fixture
def classmate() -> Iterator[Path]:
    """Another student's submission, in a class folder outside /tmp (which the sandbox replaces anyway)."""
    d = Path(tempfile.mkdtemp(prefix="hostile-class-", dir="/var/tmp"))
    os.chmod(d, 0o755)
    (d / "precious.txt").write_text("keep me\n")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _snapshot(paths: list[Path]) -> dict[str, tuple[int, int]]:
    snap = {}
    for top in paths:
        if not top.exists():
            continue
        for p in [top, *top.rglob("*")] if top.is_dir() else [top]:
            try:
                st = os.lstat(p)
            except OSError:
                continue
            snap[str(p)] = (st.st_size, st.st_mtime_ns)
    return snap


def _tmp_listing() -> set[str]:
    return {p.name for p in Path("/tmp").iterdir() if "hostile" in p.name}


def _leftovers(case: str) -> list[str]:
    """The case's daemons still running: a case that leaves one behind names it hostile-CASE (escape.c),
    so that another case graded meanwhile is not blamed for it."""
    res = subprocess.run(["pgrep", "-a", "-x", f"hostile-{case}"[:15]], capture_output=True, text=True)
    return res.stdout.splitlines()


def _host_submission(case: str, dest: Path, sentinel: Path, classmate: Path) -> Path:
    sub = dest / "submission"
    shutil.copytree(REPO / "labs" / HOST_LAB, sub / HOST_LAB)
    source = (HOSTILE / "host" / f"{case}.c").read_text().replace("@SENTINEL@", str(sentinel)) \
        .replace("@CLASSMATE@", str(classmate)) \
        .replace("@REPO@", str(REPO)).replace("@SECRET@", str(sentinel.parent / "secret.txt"))
    cs = list((sub / HOST_LAB).glob("*.c"))
    assert cs, f"labs/{HOST_LAB} has no C sources"
    for c in cs:
        c.write_text(source)
    return sub


# Fork bombs fill the process count of the sandbox's user, which every grading shares: they run alone
# (selftests/conftest.py), not beside other gradings whose programs and QEMU would then fail to fork; and
ALONE = {"forkbomb", "forkbomb_setsid"}
# Cases graded on lab 1's Task 1 only: each further test holds the same hog to the same limit, and they
# burn the CPU the other tests need.  Not memory_hog: in Task 1's tests AddressSanitizer's allocator
# refuses first, and the watchdog's memory limit shows only in later tests.
TASK1_ONLY = {"forkbomb", "forkbomb_setsid", "loop", "exec_hog", "ignores_term", "handler_blocks"}


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.alone) if c in ALONE else c
                                  for c in sorted(HOST_CASES)])
def test_host_hostile_submission(case: str, tmp_path: Path, sentinel: Path, classmate: Path) -> None:
    sub = _host_submission(case, tmp_path, sentinel, classmate)
    watched = [sentinel, REPO / "labs", REPO / "solutions", REPO / "grader" / "tests"]
    before, tmp_before = _snapshot(watched), _tmp_listing()
    s = run_grading(sub, lab=int(HOST_LAB[:2]), timeout=900, time_scale=CASE_SCALE.get(case, SCALE),
                    task=1 if case in TASK1_ONLY else None)
    assert s.score == 0, f"{case}: a hostile submission scored {s.score}/{s.max_score}"
    report = "\n".join(r["message"] for r in s.results)
    assert re.search(HOST_CASES[case], report), f"{case}: the report does not say what happened:\n{report[:3000]}"
    shown = s.text + "\n" + report + "\n".join(s.warnings)
    assert not RAW_CONTROL.search(shown), f"{case}: a control character reached the report: {RAW_CONTROL.search(shown)}"
    for leaked in (SECRET, "keep me", "LEAK "):
        assert leaked not in shown, f"{case}: the report shows what the sandbox must hide ({leaked!r}):\n{shown[:3000]}"
    assert _snapshot(watched) == before, f"{case}: files outside the scratch folder changed"
    assert (sentinel / "precious.txt").read_text() == "keep me\n"
    assert not (sentinel / "hostile-was-here").exists()
    assert _tmp_listing() <= tmp_before, f"{case}: it wrote into the host's /tmp"
    assert not _leftovers(case), f"{case}: processes survived grading: {_leftovers(case)}"


def _prepared_cases() -> list[str]:
    # gradescope-*: run through the Gradescope archive in its fallback, by selftests/test_autograder.py
    return sorted(p.name for p in HOSTILE.iterdir() if (p / "EXPECT.json").is_file()
                  and not p.name.startswith("gradescope-")) if HOSTILE.is_dir() else []


def _prepared_submission(case: str, expect: dict, dest: Path) -> Path:
    sub = dest / "submission"
    shutil.copytree(HOSTILE / case, sub, ignore=shutil.ignore_patterns("EXPECT.json"))
    if "from" in expect:
        for lab in (REPO / expect["from"]).glob(f"{expect['lab']:02d}-*"):
            shutil.copytree(lab, sub / lab.name, dirs_exist_ok=True)
    for edit in expect.get("edits", []):
        f = sub / edit["file"]
        text = f.read_text()
        assert text.count(edit["find"]) == 1, f"{case}: {edit['file']} no longer has exactly one {edit['find']!r}"
        f.write_text(text.replace(edit["find"], edit["replace"]))
    return sub


@pytest.mark.parametrize("case", _prepared_cases())
def test_prepared_hostile_submission(case: str, tmp_path: Path) -> None:
    expect = json.loads((HOSTILE / case / "EXPECT.json").read_text())
    s = run_grading(_prepared_submission(case, expect, tmp_path), lab=expect["lab"], timeout=900,
                    select=expect.get("select"))
    report = s.text + "\n" + "\n".join(r["message"] for r in s.results)
    if "score" in expect:
        assert s.score == expect["score"], f"{case}: scored {s.score}/{s.max_score}, expected {expect['score']}:\n{report}"
    if expect.get("full_marks"):
        assert s.full_marks, f"{case}: scored {s.score}/{s.max_score}, expected full marks:\n{report}"
    if expect.get("below_full"):
        assert s.score < s.max_score, f"{case}: scored {s.score}/{s.max_score}, expected less than full marks"
    outcome = {r["name"]: r["outcome"] for r in s.results}
    for name in expect.get("passes", []):  # another task's bug must not fail these
        assert outcome.get(name) == "passed", f"{case}: {name} should pass:\n{report[:3000]}"
    for name in expect.get("fails", []):
        assert outcome.get(name) == "failed", f"{case}: {name} should fail"
    for words in expect.get("table_contains", []):  # what the student sees on the console
        assert words in s.text, f"{case}: the console table should show {words!r}:\n{s.text}"
    for words in expect.get("report_contains", []):
        assert words in report, f"{case}: the report should mention {words!r}:\n{report[:3000]}"
    for rx in expect.get("report_lacks", []):  # a regular expression (multiline) no line of the report may match
        found = re.search(rx, report, re.M)
        assert not found, f"{case}: the report should not contain {found.group(0)!r}:\n{report[:3000]}"
