#!/usr/bin/env python3
"""The table of Lab 5: one queued signal per event under a burst, with three queue limits.

Boots the workbook VM with the button board and lab 3's reference driver, as
the grader does (gradelib.vmlab.reference_vm), and runs `button burst N 0` (2N events, as fast as the board goes) while the
grader's correct watcher (grader/guest/rtprobe.c `count`: F_SETSIG SIGRTMIN,
a handler that only records, main reads until EAGAIN at every signal and
resynchronises at SIGIO; asked to stop, it first handles every signal still
queued) watches with RLIMIT_SIGPENDING at each limit; the median and range of
a few bursts per limit.  "events (driver)" is how many events the driver
recorded (its seq numbers): the board's edges can come faster than the
interrupts, so a burst is not always 1002 events.  Prints the table the chapter
quotes (labs/05-realtime-signals/README.md, "Measured").

Usage: tools/plots/lab5-queue.py [--clicks N] [--runs N]     (make plot LAB=5)
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
sys.path[:0] = [str(REPO), str(REPO / "grader")]
from gradelib.vmlab import GUEST_GRADER, reference_vm  # noqa: E402
from vm import fetch, machine  # noqa: E402

REF = "button_driver_ref"
RESULT = re.compile(r"signals (\d+) overflows (\d+) flushed (\d+) records (\d+) lost (\d+) events (\d+)")
COLUMNS = ("signals handled", "overflows (SIGIO)", "signals flushed", "records read", "lost (ring)",
           "events (driver)")


def one_burst(m: machine.Machine, clicks: int, limit: int | None) -> tuple[int, ...]:
    ulimit = f"ulimit -i {limit}; " if limit else ""
    m.check(f"({ulimit}exec {GUEST_GRADER}/rtprobe count /dev/button > /tmp/count.out 2>&1) & echo $! > /tmp/count.pid; "
            "until grep -q ready /tmp/count.out; do usleep 5000; done")
    m.check("button press; button release")  # the baseline record: what the ring overwrites later is a seq gap
    m.check(f"button burst {clicks} 0", timeout=120)
    out = m.check("usleep 200000; kill -USR1 $(cat /tmp/count.pid); while kill -0 $(cat /tmp/count.pid) "
                  "2>/dev/null; do usleep 5000; done; cat /tmp/count.out")
    got = RESULT.search(out)
    if not got:
        raise SystemExit(f"plot: rtprobe said {out!r}")
    return tuple(int(x) for x in got.groups())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clicks", type=int, default=500, help="presses per burst (2 events each)")
    ap.add_argument("--runs", type=int, default=15, help="bursts per limit (the median is shown, and the range)")
    args = ap.parse_args()
    fetch.ensure(quiet=True)
    accel = "KVM" if machine.kvm_usable() else "TCG"
    with reference_vm("03-fasync-button", REF, helpers=("rtprobe",)) as m:
        kernel = m.check("uname -r").strip()
        default = int(m.check("ulimit -i").strip())
        rows = []
        for limit in (8, 64, default):
            runs = [one_burst(m, args.clicks, limit) for _ in range(args.runs)]
            rows.append((limit, [(statistics.median(c), min(c), max(c)) for c in zip(*runs)]))
    events = 2 * args.clicks + 2
    print(f"Lab 5: `button burst {args.clicks} 0` ({events} events with the press and release before it), "
          f"median (min-max) of {args.runs} ({kernel}, QEMU {accel})")
    print("| RLIMIT_SIGPENDING | " + " | ".join(COLUMNS) + " |")
    print("|--:|" + "--:|" * len(COLUMNS))
    for limit, cols in rows:
        name = f"{limit} (default)" if limit == default else str(limit)
        print(f"| {name} | " + " | ".join(f"{med:.0f} ({lo}-{hi})" for med, lo, hi in cols) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
