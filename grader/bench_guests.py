#!/usr/bin/env python3
"""Print the figures of each guest kernel the workbook names (vm/kernels.json) side by side: its boot
(QEMU's start until the guest's agent answers, median of --runs boots) and the time to grade the
reference solutions on it (`grader/grade --fresh SUBMISSION`, every lab, side by side as make grade
does), with the points they got.  A guest that is not fetched yet is fetched first (Debian's archive,
through the private apt setup: minutes the first time), unless --fetched-only.

Usage: grader/bench_guests.py [--runs N] [--fetched-only] [SUBMISSION]     (make bench)
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from vm import fetch, machine  # noqa: E402


def boots(name: str, runs: int) -> tuple[float, str]:
    """The median boot of guest `name`, and its kernel release."""
    os.environ["WORKBOOK_KERNEL"] = name
    times, release = [], ""
    for _ in range(runs):
        t = time.monotonic()
        with machine.Machine() as m:
            release = m.check("uname -r").strip()
            times.append(time.monotonic() - t)
    return statistics.median(times), release


def grade(name: str, submission: Path) -> tuple[float, str]:
    """Seconds and points of grading `submission` on guest `name` (its own output folder)."""
    with tempfile.TemporaryDirectory(prefix="bench-guest-") as out:
        t = time.monotonic()
        res = subprocess.run([str(REPO / "grader" / "grade"), "--fresh", "--quiet", "--out", out, str(submission)],
                             env=dict(os.environ, WORKBOOK_KERNEL=name, GRADE_VIA="make"),
                             capture_output=True, text=True)
        secs = time.monotonic() - t
        m = re.search(r"^Total\s+(\d+/\d+)", res.stdout, re.M)
        return secs, m.group(1) if m else f"no total (exit {res.returncode})"


def main() -> int:
    ap = argparse.ArgumentParser(description="Boot and grading time per guest kernel.")
    ap.add_argument("--runs", type=int, default=3, help="boots per guest (the median is shown)")
    ap.add_argument("--fetched-only", action="store_true", help="skip a guest that is not fetched yet")
    ap.add_argument("submission", nargs="?", type=Path, default=REPO / "solutions")
    a = ap.parse_args()
    names = list(json.loads((REPO / "vm" / "kernels.json").read_text())["kernels"])
    accel = "KVM" if machine.kvm_usable() else "TCG"
    rows = []
    print(f"The guests (vm/kernels.json), QEMU {accel}: boot (median of {a.runs}) and "
          f"`grader/grade --fresh {a.submission.name}` (every lab, side by side)", flush=True)
    for name in names:
        if a.fetched_only and not fetch.record_file(name).is_file():
            print(f"  {name}: not fetched (make fetch KERNEL={name}); skipped", flush=True)
            continue
        print(f"  ... {name}: fetching if needed, booting, grading", flush=True)
        fetch.ensure(quiet=True, name=name)
        boot, release = boots(name, a.runs)
        secs, points = grade(name, a.submission)
        rows.append((name, release, boot, secs, points))
    print(f"  {'guest':<10} {'kernel':<22} {'boot':>7} {'grading':>9}  points")
    for name, release, boot, secs, points in rows:
        print(f"  {name:<10} {release:<22} {boot:6.1f}s {secs:8.0f}s  {points}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
