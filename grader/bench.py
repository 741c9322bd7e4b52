#!/usr/bin/env python3
"""Print the grader's figures: the wall time of `make grade` on the reference
solutions (per lab and in all), what the kernel's witness (gradelib/witness.py:
a recording per VM test, read when a test fails) adds to lab 3's time, the
time `make vm LAB=3` takes to a prompt when nothing changed, and the batch
rate of grader/grade-all on a class of copies of the solutions, one at a time
(-j 1) and two at a time (-j 2).

Usage: grader/bench.py [--runs N] [--class-size N] [--lab N]     (make bench)
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRADER = Path(__file__).resolve().parent
REPO = GRADER.parent


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    t = time.monotonic()
    res = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=dict(os.environ, **env) if env else None)
    return time.monotonic() - t, res.returncode


# The lab whose grading time is also measured without the kernel's witness (GRADER_WITNESS=0):
# lab 3's tests only show the record in failure messages; later labs check counts against it.
WITNESS_LAB = 3


def labs() -> list[int]:
    found = []
    for d in sorted((REPO / "solutions").glob("[0-9][0-9]-*")):
        if list((GRADER / "tests").glob(f"test_lab{d.name[:2]}_*.py")):
            found.append(int(d.name[:2]))
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description="Grading wall time and batch rate.")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--class-size", type=int, default=6)
    ap.add_argument("--lab", type=int, help="only this lab")
    args = ap.parse_args()
    grade = str(GRADER / "grade")
    numbers = [args.lab] if args.lab else labs()
    if not numbers:
        print("bench: no labs with tests yet", file=sys.stderr)
        return 1
    print(f"Grader figures (median of {args.runs} runs, `grader/grade solutions`)")
    for n in numbers:
        runs: dict[str, list[float]] = {"1": [], "0": []}
        # A VM lab also runs with the witness off (GRADER_WITNESS=0), interleaved, to show its cost.
        for _ in range(args.runs):
            for witness in ("1", "0") if n == WITNESS_LAB else ("1",):
                t, rc = timed([grade, "--quiet", "--lab", str(n), str(REPO / "solutions"), "--out",
                               tempfile.mkdtemp(prefix="bench-out-")], env={"GRADER_WITNESS": witness})
                if rc != 0:
                    print(f"bench: grading lab {n} of the solutions did not give full marks (status {rc})",
                          file=sys.stderr)
                    return 1
                runs[witness].append(t)
        on = statistics.median(runs["1"])
        line = f"  lab {n}                  {on:7.1f} s"
        if runs["0"]:
            off = statistics.median(runs["0"])
            line += f"   (without the kernel's witness {off:.1f} s: it adds {on - off:+.1f} s, {100 * (on - off) / off:+.0f} %)"
        print(line)
    if 3 in numbers:
        times = [timed(["make", "-s", "-C", str(REPO), "grade", "LAB=3", "SUBMISSION=solutions"])[0]
                 for _ in range(args.runs)]
        print(f"  make grade LAB=3       {statistics.median(times):7.1f} s  (goal: under 20 s)")
        vm_prompt()
        times = [vm_prompt() for _ in range(args.runs)]
        print(f"  make vm LAB=3 to a prompt, unchanged module {statistics.median(times):5.1f} s  (goal: under 8 s)")
    if not args.lab:
        times = [timed([grade, "--quiet", str(REPO / "solutions"), "--out", tempfile.mkdtemp(prefix="bench-out-")])[0]
                 for _ in range(args.runs)]
        print(f"  all labs (make grade)  {statistics.median(times):7.1f} s")

    with tempfile.TemporaryDirectory(prefix="bench-class-") as tmp:
        klass = Path(tmp) / "submissions"
        klass.mkdir()
        for i in range(args.class_size):
            dest = klass / f"student{i:02d}"
            dest.mkdir()
            for n in numbers:
                src = next((REPO / "solutions").glob(f"{n:02d}-*"))
                shutil.copytree(src, dest / src.name)
        for jobs in (1, 2):
            cmd = [str(GRADER / "grade-all"), "-j", str(jobs), str(klass), "--out", str(Path(tmp) / f"grades{jobs}")]
            if args.lab:
                cmd += ["--lab", str(args.lab)]
            t, rc = timed(cmd)
            if rc not in (0, 1):
                print(f"bench: grade-all failed (status {rc})", file=sys.stderr)
                return 1
            print(f"  batch (grade-all -j {jobs}, {args.class_size} submissions): {t:.1f} s, "
                  f"{args.class_size / t * 60:.1f} submissions per minute")
    return 0


def vm_prompt() -> float:
    """Seconds from `make vm LAB=3` to the VM's shell prompt (then it powers off)."""
    t = time.monotonic()
    p = subprocess.Popen(["make", "-s", "-C", str(REPO), "vm", "LAB=3", "SUBMISSION=solutions"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen = b""
    while b"vm:/lab# " not in seen:
        chunk = p.stdout.read1(4096)
        if not chunk:
            break
        seen += chunk
    took = time.monotonic() - t
    p.stdin.write(b"poweroff\n")
    p.stdin.flush()
    p.communicate(timeout=60)
    return took


if __name__ == "__main__":
    sys.exit(main())
