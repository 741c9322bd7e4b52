#!/usr/bin/env python3
"""The figure of Lab 4: events, SIGIO deliveries and records read against the burst interval.

Boots the workbook VM with the button board and lab 3's reference driver, as
the grader does (gradelib.vmlab.reference_vm), and for each interval runs `button burst N INTERVAL` while the grader's
correct reader (grader/guest/reader.c: a SIGIO handler that reads until
EAGAIN) watches; the median of a few runs per point.  Prints the table and
writes labs/04-sigio-bursts/bursts.svg with gnuplot (tools/deps.sh --plot).

Usage: tools/plots/lab4-bursts.py [--clicks N] [--runs N] [--out FILE]     (make plot LAB=4)
"""
from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
sys.path[:0] = [str(REPO), str(REPO / "grader")]
from gradelib.vmlab import GUEST_GRADER, reference_vm  # noqa: E402
from vm import fetch, machine  # noqa: E402

INTERVALS = [0, 20, 50, 100, 200, 500, 1000, 2000]  # us between presses (under ~50: as fast as it goes)
REF = "button_driver_ref"
RESULT = re.compile(r"deliveries (\d+) records (\d+) lost (\d+)")


def irqs(m: machine.Machine) -> int:
    for line in m.check("cat /proc/interrupts").splitlines():
        if line.rstrip().endswith(" " + REF):
            return int(line.split()[1])
    raise SystemExit(f"plot: {REF} has no IRQ")


def one_burst(m: machine.Machine, clicks: int, interval: int) -> tuple[int, int, int]:
    """(events, deliveries, records read) of one burst: the reader drains what is left at the end, so
    the records not read are those the ring overwrote while the reader was not running."""
    m.check(f"{GUEST_GRADER}/reader count > /tmp/reader.out 2>&1 & echo $! > /tmp/reader.pid; "
            "until grep -q ready /tmp/reader.out; do usleep 5000; done")
    before = irqs(m)
    m.check(f"button burst {clicks} {interval}", timeout=120)
    events = irqs(m) - before
    out = m.check("kill -USR1 $(cat /tmp/reader.pid); while kill -0 $(cat /tmp/reader.pid) 2>/dev/null; "
                  "do usleep 5000; done; cat /tmp/reader.out")
    got = RESULT.search(out)
    if not got:
        raise SystemExit(f"plot: the reader said {out!r}")
    return events, int(got.group(1)), int(got.group(2))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clicks", type=int, default=250, help="presses per burst (2 events each)")
    ap.add_argument("--runs", type=int, default=7, help="bursts per point (the median is plotted, and the range)")
    ap.add_argument("--out", type=Path, default=REPO / "labs" / "04-sigio-bursts" / "bursts.svg")
    args = ap.parse_args()
    fetch.ensure(quiet=True)
    accel = "KVM" if machine.kvm_usable() else "TCG"
    with tempfile.TemporaryDirectory(prefix="plot-") as tmp:
        work = Path(tmp)
        rows = []
        with reference_vm("03-fasync-button", REF, helpers=("reader",)) as m:
            kernel = m.check("uname -r").strip()
            for us in INTERVALS:
                runs = [one_burst(m, args.clicks, us) for _ in range(args.runs)]
                cols = list(zip(*runs))
                rows.append((us, *(f(c) for c in cols for f in (statistics.median, min, max))))
        print(f"Lab 4: {args.clicks} presses per burst, median (min-max) of {args.runs} ({kernel}, QEMU {accel})")
        print(f"  {'interval us':>11}  {'events':>6}  {'SIGIO deliveries':>16}  {'records read':>16}")
        for us, ev, _, _, dl, dl0, dl1, rd, rd0, rd1 in rows:
            print(f"  {us:>11}  {ev:>6.0f}  {f'{dl:.0f} ({dl0}-{dl1})':>16}  {f'{rd:.0f} ({rd0}-{rd1})':>16}")
        data = work / "bursts.dat"
        data.write_text("".join(f"{i} " + " ".join(str(x) for x in row) + "\n" for i, row in enumerate(rows)))
        tics = ", ".join(f'"{us}" {i}' for i, (us, *_) in enumerate(rows))
        top = max(r[1] for r in rows) * 1.15
        script = f"""
set terminal svg size 760,470 dynamic font "sans,13" background "white"
set output "{args.out}"
set title "One SIGIO for many events: a burst of {args.clicks} presses ({kernel}, QEMU {accel})"
set xlabel "interval between presses (us)"
set ylabel "count (median of {args.runs} bursts, and their range)"
set xtics ({tics})
set yrange [0:{top:.0f}]
set key outside below horizontal
set grid ytics
set offsets 0.3, 0.3, 0, 0
plot "{data}" using 1:3 with linespoints lw 2 pt 7 lc rgb "#333333" title "events (interrupts)", \\
     "{data}" using 1:9:10:11 with yerrorlines lw 2 pt 5 lc rgb "#1f77b4" title "records read (until EAGAIN)", \\
     "{data}" using 1:6:7:8 with yerrorlines lw 2 pt 9 lc rgb "#d62728" title "SIGIO deliveries"
"""
        args.out.parent.mkdir(parents=True, exist_ok=True)
        try:
            subprocess.run(["gnuplot"], input=script, text=True, check=True)
        except FileNotFoundError:
            print("plot: gnuplot is not installed: sh tools/deps.sh --plot", file=sys.stderr)
            return 1
        print(f"plot: wrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
