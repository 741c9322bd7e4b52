#!/usr/bin/env python3
"""Lab 6's comparison of notification mechanisms: a table and labs/06-sigwaitinfo/mechanisms.svg.

Six ways for a program to learn that a file has data (grader/guest/mechbench.c): SIGIO with a
draining handler, F_SETSIG with a handler, sigwaitinfo(), signalfd + epoll, epoll with no signal,
and a blocking read.  Each is run side by side on the same events, in one run of this script:

- on the host, a pipe: a child writes N records, one write(2) each, BURST at a time with 1 ms
  between bursts, each stamped with CLOCK_MONOTONIC when written;
- in the VM, /dev/button of lab 3's reference driver: `button burst CLICKS 0` (2*CLICKS events as
  fast as the board goes), the record's time_ns the time of the interrupt; a second after the
  burst the program is told to stop (SIGTERM) and says what it read.

For each: events read per second (from the first event's time to the receipt of the last), the
latency from an event's time (the writer's clock before its write(2); the driver's ktime_get_ns() in
the interrupt handler) to the return of the read(2) that got it, median and 99th percentile (under a
burst: mostly the backlog it waited behind), the process's CPU time per event, the wakeups (signals
handled or waits returned), the fallbacks (SIGIO for a full queue), the signals still queued when
the program stopped at its last record, and the events lost (seq gaps: the driver's ring overwrote
them; a pipe blocks its writer instead and loses none).  Each figure: the median and the range
(min-max) over RUNS runs of each mechanism; then, for each measure, the mechanisms in order of their
medians in groups, "<" between two groups only where every run on the left was below every run on
the right (an ordering that held in every run).  Host
and VM figures in separate tables; VM figures under TCG (no KVM) are relative: compare the rows,
not the numbers.

Usage: tools/plots/lab6-mechanisms.py [--runs N] [--clicks N] [--pipe N] [--burst N] [--out SVG]
       (make bench; make plot LAB=6)
"""
from __future__ import annotations

import argparse
import re
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
sys.path[:0] = [str(REPO), str(REPO / "grader")]
from gradelib.vmlab import GUEST_GRADER, build_helper, reference_vm  # noqa: E402
from vm import fetch, machine  # noqa: E402

REF = "button_driver_ref"
MECHS = [("sigio", "SIGIO, a draining handler"), ("setsig", "F_SETSIG, a handler"),
         ("sigwait", "sigwaitinfo()"), ("signalfd", "signalfd + epoll"), ("epoll", "epoll, no signal"),
         ("read", "blocking read")]
RESULT = re.compile(r"^result mech=(\S+) events=(\d+) lost=(\d+) wakeups=(\d+) span_ns=(\d+) p50_ns=(\d+) "
                    r"p99_ns=(\d+) cpu_ns=(\d+) fallbacks=(\d+) left=(\d+)$", re.M)
# key, column heading, format, an ordering worth printing
MEASURES = [("rate", "events/s", "{:,.0f}", True), ("p50", "latency median (us)", "{:,.0f}", True),
            ("p99", "latency p99 (us)", "{:,.0f}", True), ("cpu", "CPU per event (us)", "{:.2f}", True),
            ("wakeups", "wakeups", "{:.0f}", False), ("fallbacks", "fallbacks (SIGIO)", "{:.0f}", False),
            ("left", "queued at exit", "{:.0f}", False), ("signals", "wakeups + queued", "{:.0f}", False),
            ("lost", "lost", "{:.0f}", False)]
Stats = dict[str, tuple[float, float, float]]   # measure: (median, min, max)


def parse(out: str) -> dict[str, float]:
    m = RESULT.search(out)
    if not m:
        raise SystemExit(f"bench: mechbench said {out[-400:]!r}")
    events, lost, wakeups, span, p50, p99, cpu, fallbacks, left = (int(x) for x in m.groups()[1:])
    return {"rate": events / (span / 1e9) if span else 0.0, "p50": p50 / 1e3, "p99": p99 / 1e3,
            "cpu": cpu / 1e3 / events if events else 0.0, "wakeups": wakeups, "fallbacks": fallbacks,
            "left": left, "signals": wakeups + left, "lost": lost, "events": events}


def median(runs: list[dict[str, float]]) -> Stats:
    return {k: (statistics.median(r[k] for r in runs), min(r[k] for r in runs), max(r[k] for r in runs))
            for k in runs[0]}


def host(exe: Path, runs: int, n: int, burst: int) -> dict[str, Stats]:
    got = {}
    for mech, name in MECHS:
        print(f"  ... host, a pipe: {name} ({runs} runs)", flush=True)
        outs = [subprocess.run([str(exe), mech, "pipe", str(n), str(burst)], capture_output=True, text=True,
                               timeout=120).stdout for _ in range(runs)]
        got[mech] = median([parse(o) for o in outs])
    return got


def vm(runs: int, clicks: int) -> tuple[dict[str, Stats], str]:
    print("  ... VM: building the board and lab 3's reference driver, booting", flush=True)
    with reference_vm("03-fasync-button", REF, helpers=("mechbench",)) as m:
        kernel = m.check("uname -r").strip()
        got = {}
        for mech, name in MECHS:
            print(f"  ... VM, the button: {name} ({runs} runs)", flush=True)
            outs = []
            for _ in range(runs):
                m.check(f"{GUEST_GRADER}/mechbench {mech} /dev/button > /tmp/mb.out 2>&1 & echo $! > /tmp/mb.pid; "
                        "until grep -q ready /tmp/mb.out; do usleep 5000; done; "
                        "button press; button release; usleep 200000")
                m.check(f"button burst {clicks} 0", timeout=120)
                # the interrupts were delivered: a second for the events to reach the program, then its end
                outs.append(m.check("usleep 1000000; kill -TERM $(cat /tmp/mb.pid); i=0; "
                                    "until grep -q '^result' /tmp/mb.out || [ $i -ge 600 ]; do "
                                    "usleep 50000; i=$((i+1)); done; cat /tmp/mb.out", timeout=60))
            got[mech] = median([parse(o) for o in outs])
    return got, kernel


def cell(fmt: str, st: tuple[float, float, float]) -> str:
    med, lo, hi = st
    return fmt.format(med) if lo == hi else f"{fmt.format(med)} ({fmt.format(lo)}-{fmt.format(hi)})"


def table(title: str, rows: dict[str, Stats]) -> str:
    lines = [title, "", "| mechanism | " + " | ".join(h for _, h, _, _ in MEASURES) + " |",
             "|---|" + "--:|" * len(MEASURES)]
    for mech, name in MECHS:
        lines.append(f"| {name} | " + " | ".join(cell(fmt, rows[mech][k]) for k, _, fmt, _ in MEASURES) + " |")
    return "\n".join(lines)


def orderings(rows: dict[str, Stats]) -> str:
    """For each measure, the mechanisms from the least to the most by median, in groups: a '<' between
    two groups where every value of every run on its left is below every value on its right (so the
    ordering held in every run), '; ' inside a group (the ranges overlap: no ordering claimed)."""
    names = dict(MECHS)
    lines = []
    for key, heading, fmt, ordered in MEASURES:
        if not ordered:
            continue
        mechs = sorted(rows, key=lambda m: rows[m][key][0])
        text = "{" + names[mechs[0]]
        for i in range(1, len(mechs)):
            split = max(rows[m][key][2] for m in mechs[:i]) < min(rows[m][key][1] for m in mechs[i:])
            text += ("} < {" if split else "; ") + names[mechs[i]]
        text += "}"
        lines.append(f"- {heading}: {text}")
    return "\n".join(lines)


def svg(panels: list[tuple[str, dict[str, Stats]]]) -> str:
    """Horizontal bars: for each source a column, for each measure a row; every panel scaled to its own
    largest value (the host's and the VM's numbers are not comparable).  A bar is the median, the
    black line across it the range (min-max) of the runs."""
    measures = [("rate", "events/s (more is better), median and range", "{:,.0f}"),
                ("p50", "latency median, us", "{:,.0f}"), ("p99", "latency p99, us", "{:,.0f}"),
                ("cpu", "CPU per event, us", "{:.2f}")]
    label_w, bar_w, row_h, gap = 190, 230, 16, 34
    panel_h = len(MECHS) * row_h + gap
    width = label_w + len(panels) * (bar_w + 70) + 10
    height = 40 + len(measures) * panel_h + 10
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">', f'<rect width="{width}" height="{height}" fill="white"/>']
    for c, (title, rows) in enumerate(panels):
        x0 = label_w + c * (bar_w + 70)
        out.append(f'<text x="{x0}" y="18" font-weight="bold">{title}</text>')
    for r, (key, name, fmt) in enumerate(measures):
        y0 = 40 + r * panel_h
        out.append(f'<text x="4" y="{y0 + 12}" font-weight="bold">{name}</text>')
        for i, (mech, label) in enumerate(MECHS):
            y = y0 + 20 + i * row_h
            out.append(f'<text x="{label_w - 6}" y="{y + 11}" text-anchor="end">{label}</text>')
        for c, (_, rows) in enumerate(panels):
            x0 = label_w + c * (bar_w + 70)
            top = max(rows[m][key][2] for m, _ in MECHS) or 1
            for i, (mech, _) in enumerate(MECHS):
                y = y0 + 20 + i * row_h
                v, lo, hi = rows[mech][key]
                w = max(1, round(bar_w * v / top))
                x_lo, x_hi = x0 + round(bar_w * lo / top), x0 + max(1, round(bar_w * hi / top))
                colour = "#4477aa" if mech in ("epoll", "read") else "#cc6677"
                out.append(f'<rect x="{x0}" y="{y + 2}" width="{w}" height="{row_h - 4}" fill="{colour}"/>')
                out.append(f'<line x1="{x_lo}" y1="{y + 8}" x2="{x_hi}" y2="{y + 8}" stroke="black"/>')
                out.append(f'<text x="{max(x0 + w, x_hi) + 4}" y="{y + 11}">{fmt.format(v)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="runs of each mechanism (median and range shown)")
    ap.add_argument("--host-only", action="store_true", help="no VM (the table and figure of the host alone)")
    ap.add_argument("--clicks", type=int, default=500, help="VM: presses per burst (2 events each)")
    ap.add_argument("--pipe", type=int, default=20000, help="host: records written to the pipe")
    ap.add_argument("--burst", type=int, default=1000, help="host: records per burst (1 ms between bursts)")
    ap.add_argument("--out", type=Path, default=REPO / "labs" / "06-sigwaitinfo" / "mechanisms.svg")
    args = ap.parse_args()
    if not args.out.parent.is_dir():  # an edition handed out before lab 6 (tools/student-edition.sh --through)
        print(f"lab6-mechanisms: no {args.out.parent.name} in this edition: nothing to measure")
        return 0
    fetch.ensure(quiet=True)
    with tempfile.TemporaryDirectory(prefix="mechbench-") as tmp:
        exe = build_helper("mechbench", Path(tmp))  # the same build as the VM's copy
        on_host = host(exe, args.runs, args.pipe, args.burst)
        if not args.host_only:
            in_vm, kernel = vm(args.runs, args.clicks)
    accel = "KVM" if machine.kvm_usable() else "TCG"
    host_kernel = subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout.strip()
    host_limit = resource.getrlimit(resource.RLIMIT_SIGPENDING)[0]
    print(table(f"Host ({host_kernel}, RLIMIT_SIGPENDING {host_limit}), a pipe: {args.pipe} records, "
                f"{args.burst} per burst; median (min-max) of {args.runs} runs", on_host))
    print("\nOrderings (host), least first: '<' held in every run, no order inside {}")
    print(orderings(on_host))
    panels = [("host: a pipe", on_host)]
    if not args.host_only:
        print()
        print(table(f"VM ({kernel}, QEMU {accel}), /dev/button: `button burst {args.clicks} 0` ({2 * args.clicks} "
                    f"events); median (min-max) of {args.runs} runs" + (" (TCG: relative figures)" if accel == "TCG"
                                                                       else ""), in_vm))
        print("\nOrderings (VM), least first: '<' held in every run, no order inside {}")
        print(orderings(in_vm))
        panels.append((f"VM ({accel}): /dev/button", in_vm))
    args.out.write_text(svg(panels))
    print(f"\nwrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
