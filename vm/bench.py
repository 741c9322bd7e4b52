#!/usr/bin/env python3
"""Print the VM's figures, each the median of several runs.

    boot to first command   QEMU start until the agent answered a command
    command round trip      `true` in the guest, host to host
    boot to poweroff        QEMU start until QEMU exited after poweroff
    kernel reaches /init    the guest's own uptime at "Run /init" (what is
                            left in the kernel's init time)
    smoke module build      vm/smoke with kbuild against the cached headers
    witness per test        `sigtrace start`, host to host (the grader's witness
                            starts a recording before every VM test)
    witness per failure     `sigtrace show -t` of one process (what a failing
                            test adds to read the kernel's record and timeline)

Usage: vm/bench.py [--runs N]      (make bench)
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vm import fetch, kmod, machine  # noqa: E402

HERE = Path(__file__).resolve().parent


def one_boot() -> tuple[float, float, float, float]:
    t0 = time.monotonic()
    m = machine.Machine()
    m.start()
    try:
        m.run("true")
        first = time.monotonic() - t0
        trips = []
        for _ in range(20):
            t = time.monotonic()
            m.run("true")
            trips.append(time.monotonic() - t)
        log = m.run("dmesg").stdout
        found = re.search(r"\[\s*(\d+\.\d+)\] Run /init", log)
        init = float(found.group(1)) if found else float("nan")
    finally:
        m.close()
    return first, statistics.median(trips), time.monotonic() - t0, init


def witness_costs(runs: int) -> tuple[float, float]:
    """Medians of `sigtrace start` and of `sigtrace show -t`, host to host, in one boot."""
    starts, shows = [], []
    with machine.Machine() as m:
        m.check("sigtrace start")  # the first one sets tracefs up
        for _ in range(runs):
            t = time.monotonic()
            m.check("sigtrace start")
            starts.append(time.monotonic() - t)
            m.run("sh -c 'kill -USR1 $$'")
            t = time.monotonic()
            m.check("sigtrace show -t -n 200 -p 1")
            shows.append(time.monotonic() - t)
    return statistics.median(starts), statistics.median(shows)


def main() -> int:
    ap = argparse.ArgumentParser(description="VM boot and build figures (medians).")
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    try:
        fetch.ensure(quiet=True)
        accel = "kvm" if machine.kvm_usable() else "tcg"
        machine.host_tsc_khz()  # measured once, not inside a timed boot
        builds = []
        for _ in range(max(3, args.runs // 2)):
            with tempfile.TemporaryDirectory() as out:
                t = time.monotonic()
                b = kmod.build_module(HERE / "smoke", Path(out))
                builds.append(time.monotonic() - t)
                if not b.ok:
                    print(f"bench: the smoke module does not build:\n{b.summary()}", file=sys.stderr)
                    return 1
        runs = [one_boot() for _ in range(args.runs)]
        witness = witness_costs(4 * args.runs)
    except (fetch.FetchError, kmod.KmodError, machine.VMError) as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    med = [statistics.median(col) for col in zip(*runs)]
    print(f"VM figures ({accel.upper()}, median of {args.runs} boots; kernel {fetch.recorded_version()})")
    print(f"  boot to first command   {med[0] * 1000:7.0f} ms")
    print(f"  command round trip      {med[1] * 1000:7.1f} ms")
    print(f"  boot to poweroff        {med[2] * 1000:7.0f} ms   (20 commands in between)")
    print(f"  kernel reaches /init    {med[3] * 1000:7.0f} ms   (guest uptime)")
    print(f"  smoke module build      {statistics.median(builds) * 1000:7.0f} ms   (median of {len(builds)})")
    print(f"  witness per test        {witness[0] * 1000:7.1f} ms   (sigtrace start, median of {4 * args.runs})")
    print(f"  witness per failure     {witness[1] * 1000:7.1f} ms   (sigtrace show -t)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
