#!/usr/bin/env python3
"""Print the figures of the student's loop: how long `make grade` takes on a copy of the untouched
starter (with a VM lab done: the solution's) the first time (every lab graded, side by side), with nothing changed (every lab from the
cache), with one file of lab 1 changed, and with one file of a VM lab changed; and how many lines it
prints.  The copy is a temporary folder (SUBMISSION=...): the student's own labs/ and their cached
results are not touched, but grader/out's results.json and report.txt are the bench's afterwards.

Usage: grader/bench_loop.py [--runs N] [--vm-lab N]     (make bench)
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def make_grade(sub: Path, *extra: str) -> tuple[float, int, int]:
    """Seconds, exit status and lines printed of one `make grade SUBMISSION=sub`."""
    t = time.monotonic()
    res = subprocess.run(["make", "-s", "--no-print-directory", "grade", f"SUBMISSION={sub}", *extra], cwd=REPO,
                         capture_output=True, text=True)
    return time.monotonic() - t, res.returncode, len((res.stdout + res.stderr).splitlines())


def changed(sub: Path, f: Path) -> float:
    """Seconds of one `make grade` after a change to file f."""
    with open(f, "a") as out:
        out.write("/* bench: a change */\n")
    return make_grade(sub)[0]


def main() -> int:
    ap = argparse.ArgumentParser(description="The student's loop: make grade's wall time.")
    ap.add_argument("--runs", type=int, default=3, help="runs of the quick cases (median)")
    ap.add_argument("--vm-lab", type=int, default=3, help="the VM lab whose file is changed")
    a = ap.parse_args()
    top = Path(tempfile.mkdtemp(prefix="bench-loop-"))
    try:
        sub = top / "labs"
        shutil.copytree(REPO / "labs", sub, ignore=shutil.ignore_patterns("*.svg"))
        lab1 = sorted((sub / "01-signal").glob("*.c"))[0]
        vm = sorted(sub.glob(f"{a.vm_lab:02d}-*"))[0]
        # the VM lab as a student who has done it: a changed file regrades tests that pass, not timeouts
        shutil.rmtree(vm)
        shutil.copytree(REPO / "solutions" / vm.name, vm)
        vmfile = sorted(vm.glob("*.c"))[0]
        print("The student's loop (`make grade SUBMISSION=<a copy of the starter>`, wall time)", flush=True)
        secs, _, lines = make_grade(sub, "FRESH=1")
        print(f"  every lab graded, side by side:       {secs:6.1f} s  ({lines} lines printed)", flush=True)
        quick = [make_grade(sub) for _ in range(a.runs)]
        print(f"  nothing changed:                      {statistics.median(q[0] for q in quick):6.1f} s  "
              f"(median of {a.runs}; {quick[-1][2]} lines)", flush=True)
        for what, f in ((f"lab 1 changed ({lab1.name})", lab1), (f"lab {a.vm_lab} (VM) changed ({vmfile.name})", vmfile)):
            print(f"  one file of {what}: {statistics.median(changed(sub, f) for _ in range(a.runs)):6.1f} s  "
                  f"(median of {a.runs})", flush=True)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
