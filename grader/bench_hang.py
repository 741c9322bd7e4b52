#!/usr/bin/env python3
"""Print the figure of Lab 1, section 3: how long the starter's ticker (a
SIGALRM handler that calls printf() while main loops in printf(), 1000 ticks
a second) runs before it hangs, with its stdout on a terminal (a pty drained
as fast as it fills, like a terminal window) and on /dev/null.  A run counts
as hung when the program sleeps in futex() on the same address, spending no
CPU time, for 0.1 s (gradelib.diagnose.futex_stall).

Usage: grader/bench_hang.py [--runs N] [--limit S]     (make bench)
"""
from __future__ import annotations

import argparse
import os
import platform
import pty
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

GRADER = Path(__file__).resolve().parent
REPO = GRADER.parent
sys.path.insert(0, str(GRADER))

from gradelib import diagnose  # noqa: E402


def glibc() -> str:
    return " ".join(platform.libc_ver()) or "unknown libc"


def drain(fd: int) -> None:
    try:
        while os.read(fd, 65536):
            pass
    except OSError:
        pass


def one_run(exe: Path, where: str, limit: float) -> float | None:
    """Seconds until the program hung, or None if it still ran after `limit` seconds."""
    if where == "pty":
        master, slave = pty.openpty()
        t0 = time.monotonic()
        p = subprocess.Popen([str(exe)], stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.DEVNULL)
        os.close(slave)
        threading.Thread(target=drain, args=(master,), daemon=True).start()
    else:
        master = -1
        t0 = time.monotonic()
        p = subprocess.Popen([str(exe), "-o", "/dev/null"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        snap = diagnose.futex_stall(p.pid, limit, settle=0.1)
        return None if snap is None else time.monotonic() - t0 - 0.1
    finally:
        p.kill()
        p.wait()
        if master >= 0:
            os.close(master)


def main() -> int:
    ap = argparse.ArgumentParser(description="Time until Lab 1's starter ticker hangs.")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--limit", type=float, default=60.0, help="give up on a run after this many seconds")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "ticker"
        subprocess.run(["gcc", "-Wall", "-Wextra", "-Werror", "-O1", "-g", "-o", str(exe),
                        str(REPO / "labs" / "01-signal" / "ticker.c")], check=True)
        print(f"Lab 1 ticker, 1000 SIGALRM/s, handler calls printf(): time until it hangs "
              f"({args.runs} runs each; {glibc()}, kernel {platform.release()}, {os.cpu_count()} CPUs)")
        for where in ("pty", "null"):
            times = []
            for _ in range(args.runs):
                t = one_run(exe, where, args.limit)
                if t is not None:
                    times.append(t)
            label = "stdout on a terminal (pty)" if where == "pty" else "stdout on /dev/null"
            if times:
                print(f"  {label:28} hung {len(times)}/{args.runs}: median {statistics.median(times):.2f} s, "
                      f"slowest {max(times):.2f} s")
            else:
                print(f"  {label:28} hung 0/{args.runs} within {args.limit:g} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
