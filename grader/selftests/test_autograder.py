"""The Gradescope autograder archive (make autograder), run on this machine against a simulated
/autograder root (AUTOGRADER_ROOT): the archive built once with LABS="1" (the setting), unzipped
into ROOT/source as Gradescope does, setup.sh run without its system part (WORKBOOK_SETUP=grader-only:
no OS check, no packages, no user); then run_autograder for each case, with bubblewrap and with the
fallback forced (GRADER_SANDBOX=none), and results.json checked against Gradescope's documented
fields (its autograder specification).

Lab 1 (a host lab) in most cases, the VM lab 3 once.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from gradelib.cli import REPO

SOLUTIONS = REPO / "solutions"
STARTER = REPO / "labs"
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
def source(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ROOT/source as Gradescope leaves it after setup.sh, shared by every case."""
    root = tmp_path_factory.mktemp("autograder")
    os.chmod(root, 0o755)
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
    version = (REPO / "vm" / "cache" / "current").read_text().strip()
    for needed in ("grader/gradelib/autograder.py", "grader/tests/test_lab01_signal.py", "vm/machine.py",
                   "driver/wb_board.c", "labs/01-signal/README.md", "vm/cache/current",
                   f"vm/cache/{version}/vmlinux", f"vm/cache/{version}/busybox", f"vm/cache/{version}/kdir"):
        assert needed in members, needed
    for banned in ("solutions/", "grader/selftests/", "grader/hostile/", "labs/01-signal/worker.c"):
        assert not any(m.startswith(banned) for m in members), banned


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
