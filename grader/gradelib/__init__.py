"""gradelib: what the workbook's graded tests are written with.

    from gradelib import LabSpec, Program, graded, prereq

A test module defines LAB = LabSpec(...), marks each test @graded(task, points)
or @prereq, and takes the `lab` fixture (a LabBuild) to build and run the
student's programs contained.  See grader/README.md.
"""
import pytest

from . import diagnose
from .lab import LabBuild, LabSpec, Outcome, Proc, Program, signame
from .sandbox import Limits


def graded(task: int, points: int, hidden: bool = False):
    """A graded test: part of `task` of the module's lab, worth `points`."""
    if points <= 0:
        raise ValueError("a graded test carries points; use @prereq for checks without points")
    return pytest.mark.graded(task=task, points=points, hidden=hidden)


prereq = pytest.mark.prereq

__all__ = ["diagnose", "LabBuild", "LabSpec", "Limits", "Outcome", "Proc", "Program", "graded", "prereq", "signame"]
