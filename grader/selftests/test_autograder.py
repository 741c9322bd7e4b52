"""The Gradescope autograder archive (make autograder), run on this machine against a simulated
/autograder root (AUTOGRADER_ROOT): the archive built once with LABS="1" (the setting), unzipped
into ROOT/source as Gradescope does, setup.sh run without its system part (WORKBOOK_SETUP=grader-only:
no OS check, no packages, no user); then run_autograder for each case, with bubblewrap and with the
fallback forced (GRADER_SANDBOX=none), and results.json checked against Gradescope's documented
fields (its autograder specification).

Lab 1 (a host lab) in most cases, the VM lab 3 once.

The hostile corpus's Gradescope cases (grader/hostile/gradescope-*/EXPECT.json, the format of
selftests/test_hostile.py's prepared cases, with "lab", "select", "score", "report_contains") run
here, through run_autograder in the fallback: their points must be `score`, and neither results.json
nor the console may show a line of the solutions (the reference drivers) or a "LEAK" line.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Iterator

import pytest

from gradelib.cli import REPO
from test_hostile import HOSTILE, _prepared_submission

SOLUTIONS = REPO / "solutions"
STARTER = REPO / "labs"
REFERENCES = REPO / "grader" / "reference"
# Gradescope's autograder specification: the values it accepts.
STATUSES = {"passed", "failed"}
VISIBILITIES = {"hidden", "after_due_date", "after_published", "visible"}
FORMATS = {"text", "html", "simple_format", "md", "ansi"}


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("archive") / "autograder.zip"
    res = subprocess.run(["/usr/bin/python3", str(REPO / "tools" / "autograder.py"), "--out", str(out), "--labs", "1"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return out


@pytest.fixture(scope="module")
def source(archive: Path) -> Iterator[Path]:
    """ROOT/source as Gradescope leaves it after setup.sh, shared by every case.  Where student code in
    the fallback can reach it, as it can reach /autograder (pytest's own temporary folders are 0700)."""
    root = Path(tempfile.mkdtemp(prefix="autograder-source-", dir="/var/tmp"))
    os.chmod(root, 0o755)
    try:
        yield _set_up(archive, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _set_up(archive: Path, root: Path) -> Path:
    with zipfile.ZipFile(archive) as z:
        z.extractall(root / "source")
        for info in z.infolist():  # as unzip does: the permissions stored in the archive
            os.chmod(root / "source" / info.filename, (info.external_attr >> 16) & 0o777)
    res = subprocess.run(["bash", str(root / "source" / "setup.sh")], capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, AUTOGRADER_ROOT=str(root), WORKBOOK_SETUP="grader-only"))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "check: the VM booted" in res.stdout, res.stdout[-3000:]
    return root / "source"


def _autograde(source: Path, tmp: Path, submission: Path | None, fallback: bool = False,
               args: tuple[str, ...] = ()) -> tuple[subprocess.CompletedProcess, dict | None]:
    """A fresh /autograder: the shared source, run_autograder copied to the top (as Gradescope does), the
    submission and an empty results folder."""
    root = tmp / "autograder"
    root.mkdir()
    os.chmod(tmp, 0o755)
    os.chmod(root, 0o755)
    (root / "source").symlink_to(source)
    shutil.copy2(source / "run_autograder", root / "run_autograder")
    if submission is not None:
        shutil.copytree(submission, root / "submission", symlinks=True)
    else:
        (root / "submission").mkdir()
    (root / "results").mkdir()
    env = dict(os.environ, AUTOGRADER_ROOT=str(root))
    env.pop("GRADER_SANDBOX", None)
    if fallback:
        env["GRADER_SANDBOX"] = "none"
    res = subprocess.run([str(root / "run_autograder"), *args], capture_output=True, text=True, timeout=900,
                         cwd=root, env=env)
    path = root / "results" / "results.json"
    return res, (json.loads(path.read_text()) if path.exists() else None)


def _labs(tmp: Path, src: Path, *folders: str) -> Path:
    sub = tmp / "sub"
    for f in folders:
        shutil.copytree(src / f, sub / f, ignore=shutil.ignore_patterns("*.o", "*.ko", "build"))
    return sub


def check_gradescope_fields(data: dict) -> None:
    """results.json as Gradescope's specification describes it."""
    assert isinstance(data["score"], (int, float)) and isinstance(data["max_score"], (int, float))
    assert isinstance(data["execution_time"], (int, float)) and data["execution_time"] >= 0
    assert data["output_format"] in FORMATS and isinstance(data["output"], str)
    assert data.get("visibility", "visible") in VISIBILITIES
    assert data.get("stdout_visibility", "visible") in VISIBILITIES
    assert isinstance(data["tests"], list) and data["tests"]
    for t in data["tests"]:
        assert {"name", "score", "max_score", "status", "output", "visibility"} <= set(t), t
        assert isinstance(t["name"], str) and t["name"]
        assert 0 <= t["score"] <= t["max_score"], t
        assert t["status"] in STATUSES and t["visibility"] in VISIBILITIES, t
        assert t.get("output_format", "text") in FORMATS
    assert data["score"] == sum(t["score"] for t in data["tests"])
    assert data["max_score"] == sum(t["max_score"] for t in data["tests"])


def test_the_archive_has_gradescopes_layout_and_no_answers(archive: Path) -> None:
    with zipfile.ZipFile(archive) as z:
        names = set(z.namelist())
        modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in z.infolist()}
        conf = z.read("autograder.conf").decode()
        tarball = z.read("workbook.tar.gz")
    assert {"setup.sh", "run_autograder", "autograder.conf", "workbook.tar.gz"} <= names
    assert modes["setup.sh"] & 0o111 and modes["run_autograder"] & 0o111
    assert 'LABS="1"' in conf
    with tarfile.open(fileobj=io.BytesIO(tarball)) as tar:
        members = tar.getnames()
        private = {m.name: m.mode for m in tar.getmembers() if m.name.startswith("grader/reference")}
    assert modes["workbook.tar.gz"] == 0o600, "the tarball carries grader/reference/: root's alone"
    assert "grader/reference" in private and all(not mode & 0o077 for mode in private.values()), private
    version = (REPO / "vm" / "cache" / "current").read_text().strip()
    for needed in ("grader/gradelib/autograder.py", "grader/tests/test_lab01_signal.py", "vm/machine.py",
                   "driver/wb_board.c", "labs/01-signal/README.md", "vm/cache/current",
                   f"vm/cache/{version}/vmlinux", f"vm/cache/{version}/busybox", f"vm/cache/{version}/kdir"):
        assert needed in members, needed
    for banned in ("solutions/", "grader/selftests/", "grader/hostile/", "labs/01-signal/worker.c"):
        assert not any(m.startswith(banned) for m in members), banned


def test_what_comes_from_the_solutions_is_roots_alone_after_setup(source: Path) -> None:
    """grader/reference/, the tarball that carries it and the build cache that holds the reference driver
    built: student code in the fallback runs as another user and sees the file system."""
    for top in (source / "workbook.tar.gz", source / "workbook" / "grader" / "reference",
                source / "workbook" / "vm" / "cache" / "build"):
        assert top.exists(), top
        for p in [top, *top.rglob("*")]:
            st = p.lstat()
            assert st.st_uid == 0 and not st.st_mode & 0o077, f"{p}: mode {st.st_mode & 0o7777:o}"


@pytest.mark.parametrize("fallback", [False, True], ids=["bwrap", "fallback"])
def test_the_solution_gets_full_marks(source: Path, tmp_path: Path, fallback: bool) -> None:
    res, data = _autograde(source, tmp_path, _labs(tmp_path, SOLUTIONS, "01-signal"), fallback)
    assert res.returncode == 0 and data is not None, res.stdout[-3000:] + res.stderr[-3000:]
    check_gradescope_fields(data)
    assert data["score"] == data["max_score"] == 100, res.stdout[-3000:]
    assert all("lab 1" in t["tags"] for t in data["tests"]), "only the archive's LABS are graded"
    mode = "Sandbox: fallback without namespaces" if fallback else "Sandbox: bubblewrap"
    assert mode in data["output"] and mode in res.stdout


@pytest.mark.parametrize("fallback", [False, True], ids=["bwrap", "fallback"])
def test_the_untouched_starter_gets_zero_with_every_graded_test_failing(source: Path, tmp_path: Path,
                                                                         fallback: bool) -> None:
    res, data = _autograde(source, tmp_path, _labs(tmp_path, STARTER, "01-signal"), fallback)
    assert res.returncode == 0 and data is not None, res.stdout[-3000:] + res.stderr[-3000:]
    check_gradescope_fields(data)
    assert data["max_score"] == 100 and data["score"] == 0
    graded = [t for t in data["tests"] if t["max_score"] > 0]
    assert graded and all(t["status"] == "failed" and t["output"] for t in graded)


def test_a_zip_of_the_labs_is_a_submission(source: Path, tmp_path: Path) -> None:
    labs = _labs(tmp_path, SOLUTIONS, "01-signal")
    sub = tmp_path / "zipped"
    sub.mkdir()
    subprocess.run(["/usr/bin/python3", str(REPO / "tools" / "submission.py"), "--labs", str(labs), "--out",
                    str(sub / "mine.zip")], check=True, capture_output=True)
    res, data = _autograde(source, tmp_path, sub)
    assert data is not None, res.stdout[-3000:] + res.stderr[-3000:]
    assert data["score"] == data["max_score"] == 100, res.stdout[-3000:]


def test_a_grader_or_makefile_in_the_submission_is_never_run(source: Path, tmp_path: Path) -> None:
    """A whole clone of the student's repository (labs/ with the starter, a grader/ and a Makefile of
    their own that would forge full marks and leave a mark): graded by the archive's grader only."""
    sub = tmp_path / "repo"
    shutil.copytree(STARTER / "01-signal", sub / "labs" / "01-signal")
    mark = tmp_path / "forged-ran"
    forge = (f"#!/bin/sh\ntouch {mark}\nmkdir -p \"$AUTOGRADER_ROOT/results\"\n"
             f"echo '{{\"score\": 100, \"tests\": []}}' > \"$AUTOGRADER_ROOT/results/results.json\"\n")
    for f in ("grader/grade", "grader/gradelib/autograder.py", "run_autograder", "tools/gradescope/run_autograder"):
        (sub / f).parent.mkdir(parents=True, exist_ok=True)
        (sub / f).write_text(forge if not f.endswith(".py") else
                             f"import pathlib\npathlib.Path({str(mark)!r}).touch()\nraise SystemExit(0)\n")
        os.chmod(sub / f, 0o755)
    (sub / "Makefile").write_text(f"grade:\n\ttouch {mark}\n")
    res, data = _autograde(source, tmp_path, sub)
    assert data is not None, res.stdout[-3000:] + res.stderr[-3000:]
    assert not mark.exists(), "something from the submission ran"
    assert data["score"] == 0 and data["max_score"] == 100 and len(data["tests"]) > 1


def test_an_empty_submission_gets_no_points_and_the_reason(source: Path, tmp_path: Path) -> None:
    res, data = _autograde(source, tmp_path, None)
    assert res.returncode == 0 and data is not None, res.stdout + res.stderr
    assert data["score"] == 0 and "empty submission" in data["output"]


def test_the_vm_lab_gets_full_marks(source: Path, tmp_path: Path) -> None:
    res, data = _autograde(source, tmp_path, _labs(tmp_path, SOLUTIONS, "03-fasync-button"), args=("--labs", "3"))
    assert res.returncode == 0 and data is not None, res.stdout[-3000:] + res.stderr[-3000:]
    check_gradescope_fields(data)
    assert data["score"] == data["max_score"] == 100, res.stdout[-3000:]
    assert all("lab 3" in t["tags"] for t in data["tests"])


@pytest.mark.skipif(os.geteuid() != 0, reason="the fallback's own user needs a grader that is root")
def test_the_vm_lab_s_module_builds_as_the_sandbox_s_user_in_the_fallback(source: Path, tmp_path: Path) -> None:
    """The student's Kbuild runs as the sandbox's user, which cannot read the build cache nor grader/reference:
    on the tests where gradescope-lab3-reference-kbuild gets nothing, the solution gets full marks."""
    select = json.loads((HOSTILE / "gradescope-lab3-reference-kbuild" / "EXPECT.json").read_text())["select"]
    res, data = _autograde(source, tmp_path, _labs(tmp_path, SOLUTIONS, "03-fasync-button"), fallback=True,
                           args=("--labs", "3", "--select", select))
    assert res.returncode == 0 and data is not None, res.stdout[-3000:] + res.stderr[-3000:]
    assert "Sandbox: fallback without namespaces" in data["output"]
    assert data["score"] == data["max_score"] > 0, res.stdout[-3000:]


def _gradescope_cases() -> list[str]:
    return sorted(p.name for p in HOSTILE.glob("gradescope-*") if (p / "EXPECT.json").is_file())


def _solution_lines() -> set[str]:
    """The reference drivers' lines that the starter does not have (the solution's own), long enough to
    be recognised."""
    lines = set()
    for ref in REFERENCES.glob("*/*"):
        starter = STARTER / ref.parent.name / ref.name
        known = set(starter.read_text().splitlines()) if starter.is_file() else set()
        lines |= {ln.strip() for ln in ref.read_text().splitlines() if len(ln.strip()) >= 20 and ln not in known}
    return lines


@pytest.mark.skipif(os.geteuid() != 0, reason="the fallback's own user needs a grader that is root")
@pytest.mark.parametrize("case", _gradescope_cases())
def test_a_hostile_submission_in_the_fallback_gets_no_solution(source: Path, tmp_path: Path, case: str) -> None:
    expect = json.loads((HOSTILE / case / "EXPECT.json").read_text())
    sub = _prepared_submission(case, expect, tmp_path)
    args = ("--labs", str(expect["lab"]), *(("--select", expect["select"]) if "select" in expect else ()))
    res, data = _autograde(source, tmp_path, sub, fallback=True, args=args)
    assert res.returncode == 0 and data is not None, res.stdout[-3000:] + res.stderr[-3000:]
    check_gradescope_fields(data)
    assert "Sandbox: fallback without namespaces" in data["output"]
    shown = "\n".join([data["output"], *(t["output"] for t in data["tests"]), res.stdout, res.stderr])
    assert data["score"] == expect["score"], f"{case}: scored {data['score']}/{data['max_score']}:\n{shown[-3000:]}"
    for words in expect.get("report_contains", []):
        assert words in shown, f"{case}: the feedback should mention {words!r}:\n{shown[-3000:]}"
    assert "LEAK" not in shown, f"{case}: the feedback shows what student code must not reach:\n{shown[-3000:]}"
    leaked = sorted(ln for ln in _solution_lines() if ln in shown)
    assert not leaked, f"{case}: the feedback shows lines of the solutions: {leaked[:5]}"
