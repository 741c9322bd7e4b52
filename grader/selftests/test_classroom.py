"""The student edition's GitHub Classroom workflow (tools/classroom/grade.yml, written by
tools/student-edition.sh to .github/workflows/grade.yml) and its points reporter (tools/points.py).

GitHub Actions cannot run here: these check what can be checked on this machine (the edition
carries the workflow and what it runs; the workflow is valid YAML with the steps it needs; the
reporter gives the points per lab from a real results.json).  README.md says what was not tested.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from gradelib.cli import REPO

WORKFLOW = REPO / "tools" / "classroom" / "grade.yml"


@pytest.fixture(scope="module")
def edition(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("edition") / "workbook"
    res = subprocess.run(["sh", str(REPO / "tools" / "student-edition.sh"), str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return out


def test_the_student_edition_carries_the_workflow_and_what_it_runs(edition: Path) -> None:
    wf = edition / ".github" / "workflows" / "grade.yml"
    assert wf.read_text() == subprocess.run(["git", "-C", str(REPO), "show", "HEAD:tools/classroom/grade.yml"],
                                            capture_output=True, text=True, check=True).stdout
    for needed in ("Makefile", "tools/points.py", "tools/submission.py", "tools/deps.sh", "grader/grade",
                   "grader/tests/test_lab01_signal.py"):
        assert (edition / needed).exists(), needed
    assert not (edition / "solutions").exists() and not (edition / "tools" / "classroom").exists()


def test_the_workflow_runs_make_grade_in_debian_12_and_reports_points_per_lab() -> None:
    yaml = pytest.importorskip("yaml", reason="python3-yaml checks the workflow's syntax")
    wf = yaml.safe_load(WORKFLOW.read_text())
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "push" in on
    job = wf["jobs"]["grade"]
    assert job["container"] == "debian:12" and job["runs-on"].startswith("ubuntu")
    runs = [s.get("run", "") for s in job["steps"]]
    assert any("make grade" in r for r in runs)
    report = next(s for s in job["steps"] if "tools/points.py" in s.get("run", ""))
    assert report.get("if") == "always()", "the points must be reported when not full marks too"
    assert any(s.get("uses", "").startswith("actions/checkout@") for s in job["steps"])


def _results(tmp_path: Path) -> Path:
    """A results.json from a real grading (lab 1 of the starter, task 1 only: fast)."""
    out = tmp_path / "out"
    res = subprocess.run([str(REPO / "grader" / "grade"), "--lab", "1", "--task", "1", "--quiet", "--out", str(out),
                          str(REPO / "labs")], capture_output=True, text=True, timeout=600)
    assert res.returncode == 1, res.stdout + res.stderr
    return out / "results.json"


def test_points_per_lab_come_from_results_json(tmp_path: Path) -> None:
    results = _results(tmp_path)
    data = json.loads(results.read_text())
    summary = tmp_path / "summary.md"
    env = dict(os.environ, GITHUB_ACTIONS="true", GITHUB_STEP_SUMMARY=str(summary))
    res = subprocess.run(["/usr/bin/python3", str(REPO / "tools" / "points.py"), str(results)], capture_output=True,
                         text=True, env=env)
    assert res.returncode == 0, res.stderr
    tot = sum(t["max_score"] for t in data["tests"])
    assert f"Lab 1: 0/{tot}" in res.stdout and f"::notice title=Lab 1::0/{tot} points" in res.stdout, res.stdout
    assert f"| 1 | 0/{tot} |" in summary.read_text() and "advisory" in summary.read_text()


def test_no_results_means_no_points_and_says_why(tmp_path: Path) -> None:
    res = subprocess.run(["/usr/bin/python3", str(REPO / "tools" / "points.py"), str(tmp_path / "none.json")],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "did not finish" in res.stderr
