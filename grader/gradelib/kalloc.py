"""Does a driver free what it allocated?  Asked of the kernel: the kmem tracepoints.

A leak changes nothing a program can see, so no black-box test finds one.  The kernel's
kmem:kmalloc event records every kmalloc()/kzalloc() with its call site (the return address, in the
module's text for the module's own calls) and the pointer; kmem:kfree, every kfree() with the
pointer.  start_script() keeps the module's allocations only (an event filter on call_site, the
module's text range from /proc/modules) and every kfree(); after the scene, leaked() lists the
pointers allocated and never freed.  Pointers are printed hashed (%p), the same hash for the same
pointer within a boot, which is all the matching needs.  devm_ allocations have their call site in
the devres code, not in the module: they are devres' business and are not counted.  Everything runs
in a tracefs instance of its own (instances/kalloc), beside sigtrace's and kcontext's.
"""
from __future__ import annotations

import re

TRACEFS = "/sys/kernel/tracing"
INSTANCE = f"{TRACEFS}/instances/kalloc"


def start_script(lo: int, hi: int) -> str:
    """From now on, record the kmalloc()s made from [lo, hi) and every kfree()."""
    ev = f"{INSTANCE}/events/kmem"
    return "; ".join([
        f"mountpoint -q {TRACEFS} || mount -t tracefs nodev {TRACEFS}",
        f"mkdir -p {INSTANCE}",
        f"echo 0 > {INSTANCE}/tracing_on",
        f"echo 8192 > {INSTANCE}/buffer_size_kb",
        f"echo > {INSTANCE}/trace",
        f"echo 'call_site >= {lo:#x} && call_site < {hi:#x}' > {ev}/kmalloc/filter",
        f"echo 1 > {ev}/kmalloc/enable",
        f"echo 1 > {ev}/kfree/enable",
        f"echo 1 > {INSTANCE}/tracing_on",
    ])


def read_script() -> str:
    """Stop recording; the records, then a line saying whether the buffer overran."""
    return (f"echo 0 > {INSTANCE}/tracing_on; cat {INSTANCE}/trace; echo 0 > {INSTANCE}/events/kmem/kmalloc/enable; "
            f"echo 0 > {INSTANCE}/events/kmem/kfree/enable; "
            f"echo \"overrun $(grep -h '^overrun' {INSTANCE}/per_cpu/cpu*/stats | awk '{{s += $2}} END {{print s + 0}}')\"")


_EVENT = re.compile(r"\b(kmalloc|kfree): call_site=(\S+).*? ptr=(\S+)")


def leaked(text: str) -> tuple[list[str], int, bool]:
    """From read_script()'s output: the call sites of the allocations never freed, the number of
    allocations seen, and whether the record is complete (no overrun)."""
    live: dict[str, str] = {}
    seen = 0
    for m in _EVENT.finditer(text):
        kind, site, ptr = m.groups()
        if kind == "kmalloc":
            live[ptr] = site
            seen += 1
        else:
            live.pop(ptr, None)
    over = re.search(r"^overrun (\d+)$", text, re.M)
    return sorted(live.values()), seen, bool(over) and over.group(1) == "0"  # type: ignore[union-attr]
