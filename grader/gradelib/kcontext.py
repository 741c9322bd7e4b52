"""Does a driver take its locks and sleep only where the kernel allows it?  Asked of the kernel itself.

Debian's kernel has no lockdep and no atomic-sleep checks, and the lab VM has one CPU, so a
spin_lock() without _irq in read() deadlocks only if the interrupt arrives while the lock is held,
and a GFP_KERNEL allocation under a spinlock fails only when memory runs short: tests that wait
for the accident pass most of the time.  This module does not wait for it.  It puts kprobe events
(CONFIG_KPROBE_EVENTS) on the kernel's lock, sleep and allocation functions, keeps only the calls
made from the student's module (the return address, the probe's `caller`, lies in the module's
text), and counts them with hist triggers by lock, caller and context: the event's common_flags
say whether interrupts were off and whether it ran in a hard interrupt; its common_preempt_count,
whether a spinlock was held.  Then, for the paths the test made the driver run:

- a lock its interrupt handler takes, taken elsewhere with spin_lock() while interrupts are on,
  is a deadlock waiting for its interrupt (spin_lock_irq() or _irqsave() there);
- a call that may sleep (mutex_lock, msleep, copy_to_user, a GFP_KERNEL allocation,
  gpiod_get_value_cansleep...) made in a hard interrupt, with interrupts off or with a spinlock
  held, is a bug whether or not it slept this time.

Each finding names the function that made the call, from the module's symbols.  What this cannot
see: a lock that is missing altogether (no call to count), and the order of operations inside the
handler on one CPU.  Everything runs in a tracefs instance of its own (instances/kcontext), beside
sigtrace's.
"""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

TRACEFS = "/sys/kernel/tracing"
INSTANCE = f"{TRACEFS}/instances/kcontext"

IRQS_OFF, HARDIRQ = 0x01, 0x08  # trace_flag_type bits of common_flags (kernel/trace/trace.h)
GFP_DIRECT_RECLAIM = 0x400  # ___GFP_DIRECT_RECLAIM in 6.1: the allocation may sleep

# (event, kernel function, the lock's argument or "") for the spinlock and rwlock entry points
LOCKS = [
    ("kcx_spin", "_raw_spin_lock", "%di"), ("kcx_spin_irq", "_raw_spin_lock_irq", "%di"),
    ("kcx_spin_irqsave", "_raw_spin_lock_irqsave", "%di"), ("kcx_spin_bh", "_raw_spin_lock_bh", "%di"),
    ("kcx_spin_try", "_raw_spin_trylock", "%di"),
    ("kcx_read", "_raw_read_lock", "%di"), ("kcx_read_irq", "_raw_read_lock_irq", "%di"),
    ("kcx_read_irqsave", "_raw_read_lock_irqsave", "%di"),
    ("kcx_write", "_raw_write_lock", "%di"), ("kcx_write_irq", "_raw_write_lock_irq", "%di"),
    ("kcx_write_irqsave", "_raw_write_lock_irqsave", "%di"),
]
PLAIN = {"kcx_spin": "spin_lock()", "kcx_read": "read_lock()", "kcx_write": "write_lock()"}
WRITERS = {"kcx_spin", "kcx_spin_irq", "kcx_spin_irqsave", "kcx_spin_bh", "kcx_spin_try", "kcx_write",
           "kcx_write_irq", "kcx_write_irqsave"}
# (event, kernel function, the gfp argument or "", what the student wrote); "a|b": 6.1's name, then the
# one 6.12 has (the allocators' _noprof names, from memory allocation profiling in 6.10)
SLEEPERS = [
    ("kcx_mutex", "mutex_lock", "", "mutex_lock()"),
    ("kcx_mutex_int", "mutex_lock_interruptible", "", "mutex_lock_interruptible()"),
    ("kcx_mutex_kill", "mutex_lock_killable", "", "mutex_lock_killable()"),
    ("kcx_down", "down", "", "down()"), ("kcx_down_int", "down_interruptible", "", "down_interruptible()"),
    ("kcx_msleep", "msleep", "", "msleep()"), ("kcx_usleep", "usleep_range_state", "", "usleep_range()"),
    ("kcx_schedule", "schedule", "", "a sleeping wait (schedule())"),
    ("kcx_copy_to", "_copy_to_user", "", "copy_to_user()"), ("kcx_copy_from", "_copy_from_user", "", "copy_from_user()"),
    ("kcx_cansleep", "gpiod_get_value_cansleep", "", "gpiod_get_value_cansleep()"),
    ("kcx_kmalloc", "kmalloc_trace|__kmalloc_cache_noprof", "%si", "kmalloc()/kzalloc()"),
    ("kcx_kmalloc_big", "__kmalloc|__kmalloc_noprof", "%si", "kmalloc()/kzalloc()"),
    ("kcx_cache", "kmem_cache_alloc|kmem_cache_alloc_noprof", "%si", "kmem_cache_alloc()"),
    ("kcx_devm", "devm_kmalloc", "%dx", "devm_kzalloc()"),
    ("kcx_vmalloc", "vmalloc|vmalloc_noprof", "", "vmalloc()"),
]


class _Result(Protocol):
    status: int | None
    stdout: str
    stderr: str


Runner = Callable[[str, float], _Result]  # (shell command as root in the VM, timeout) -> result


def setup_script() -> str:
    """Define the kprobe events (once per boot; a function the kernel cannot probe is left out)."""
    defs = [(ev, fn, f"lock={arg}:x64 caller=+0($stack):x64") for ev, fn, arg in LOCKS]
    defs += [(ev, fn, (f"gfp={arg}:x32 " if arg else "") + "caller=+0($stack):x64") for ev, fn, arg, _ in SLEEPERS]
    # Breakpoint (int3) kprobes, not optimized (jump) ones: an optimized probe's handler runs with interrupts
    # on, and a probe hit by an interrupt that arrives meanwhile (the board's hrtimer, on the guest's one CPU)
    # is not counted (kprobe_profile's "missed"): the handler's lock could go unseen under load.  A
    # breakpoint's handler runs with interrupts off, so the interrupt waits for it and is counted.
    lines = ["echo 0 > /proc/sys/debug/kprobes-optimization",
             f"mountpoint -q {TRACEFS} || mount -t tracefs nodev {TRACEFS}", f"mkdir -p {INSTANCE}"]
    for ev, fns, args in defs:  # "a|b": the first name this kernel has (6.1's, then 6.12's)
        tries = " || ".join(f"echo 'p:{ev} {fn} {args}' >> {TRACEFS}/kprobe_events" for fn in fns.split("|"))
        lines.append(f"[ -d {TRACEFS}/events/kprobes/{ev} ] || {{ {tries}; }} 2>/dev/null")
    return "; ".join(lines) + "; true"


def _events() -> list[str]:
    return [ev for ev, _, _ in LOCKS] + [ev for ev, _, _, _ in SLEEPERS]


def start_script(lo: int, hi: int, previous: str = "") -> str:
    """Count calls from [lo, hi) (the module's text), from now on, in fresh hist tables.

    A hist trigger filters with its own `if` (the event's filter file does not apply to triggers), and
    removing one takes the same keys and filter: `previous` is the filter of the last start()."""
    flt = filter_for(lo, hi)
    old = f" if {previous}" if previous else ""
    cmds = []
    keysets = [(ev, ["lock,caller,common_flags"]) for ev, _, _ in LOCKS]
    keysets += [(ev, ["caller,common_flags" + (",gfp" if arg else ""), "caller,common_preempt_count" + (",gfp" if arg else "")])
                for ev, _, arg, _ in SLEEPERS]
    for ev, keys in keysets:
        e = f"{INSTANCE}/events/kprobes/{ev}"
        drop = "; ".join(f"echo '!hist:keys={k}{old}' >> {e}/trigger 2>/dev/null" for k in keys)
        add = "; ".join(f"echo 'hist:keys={k} if {flt}' >> {e}/trigger" for k in keys)
        cmds.append(f"[ -d {e} ] && {{ echo 0 > {e}/enable; {drop}; {add}; echo 1 > {e}/enable; }}")
    return "; ".join(cmds) + "; true"


def filter_for(lo: int, hi: int) -> str:
    return f"caller >= {lo:#x} && caller < {hi:#x}"


def read_script() -> str:
    return "; ".join(f"[ -f {INSTANCE}/events/kprobes/{ev}/hist ] && {{ echo '== {ev}'; "
                     f"cat {INSTANCE}/events/kprobes/{ev}/hist; }}" for ev in _events()) + "; true"


def stop_script() -> str:
    return "; ".join(f"[ -d {INSTANCE}/events/kprobes/{ev} ] && echo 0 > {INSTANCE}/events/kprobes/{ev}/enable"
                     for ev in _events()) + "; true"


@dataclass
class Call:
    event: str
    caller: int
    flags: int = 0
    preempt: int = 0
    lock: int = 0
    gfp: int = 0
    count: int = 0


_ENTRY = re.compile(r"\{ (.*?) \} hitcount:\s+(\d+)")


def parse(text: str) -> list[Call]:
    calls: list[Call] = []
    event = ""
    for line in text.splitlines():
        if line.startswith("== "):
            event = line[3:].strip()
            continue
        m = _ENTRY.search(line)
        if not m or not event:
            continue
        c = Call(event, 0, count=int(m.group(2)))
        for key, value in re.findall(r"(\w+):\s+(0x[0-9a-f]+|\d+)", m.group(1)):
            v = int(value, 0)
            if key == "caller":
                c.caller = v
            elif key == "common_flags":
                c.flags = v
            elif key == "common_preempt_count":
                c.preempt = v
            elif key == "lock":
                c.lock = v
            elif key == "gfp":
                c.gfp = v
        calls.append(c)
    return calls


@dataclass
class Findings:
    problems: list[str] = field(default_factory=list)
    irq_locks: set[int] = field(default_factory=set)  # locks the module took in a hard interrupt
    process_takes: dict[int, int] = field(default_factory=dict)  # lock -> takes outside interrupts


def analyse(calls: list[Call], where: Callable[[int], str]) -> Findings:
    """The rules above, on the counted calls; `where(caller)` names the function that called."""
    f = Findings()
    writers_in_irq: set[int] = set()
    for c in calls:
        if c.lock and c.flags & HARDIRQ:
            f.irq_locks.add(c.lock)
            if c.event in WRITERS:
                writers_in_irq.add(c.lock)
    seen: set[str] = set()
    for c in calls:
        if c.lock and not c.flags & HARDIRQ:
            f.process_takes[c.lock] = f.process_takes.get(c.lock, 0) + c.count
        if c.event in PLAIN and c.lock in f.irq_locks and not c.flags & (HARDIRQ | IRQS_OFF):
            readers_only = c.event == "kcx_read" and c.lock not in writers_in_irq
            if not readers_only:
                msg = (f"{where(c.caller)} takes a lock with {PLAIN[c.event]} while interrupts are on, and the "
                       f"interrupt handler takes the same lock: if the interrupt arrives while it is held, the "
                       f"handler spins on it for ever (a deadlock on one CPU). Take it with "
                       f"{PLAIN[c.event].replace('()', '_irq()')} (or _irqsave()) there.")
                if msg not in seen:
                    seen.add(msg)
                    f.problems.append(msg)
    names = {ev: what for ev, _, _, what in SLEEPERS}
    gfp_events = {ev for ev, _, arg, _ in SLEEPERS if arg}
    # (a call also counted in the preempt table: there, a hard interrupt shows as a held lock)
    in_irq = {(c.event, c.caller) for c in calls if c.flags & (HARDIRQ | IRQS_OFF)}
    for c in calls:
        if c.event not in names or (c.event in gfp_events and not c.gfp & GFP_DIRECT_RECLAIM):
            continue
        if c.preempt and not c.flags and (c.event, c.caller) in in_irq:
            continue
        ctx = ("in the interrupt handler (hard-IRQ context)" if c.flags & HARDIRQ else
               "with interrupts off" if c.flags & IRQS_OFF else
               "while holding a spinlock" if c.preempt > 0 else "")
        if not ctx:
            continue
        what = names[c.event] + (" with GFP_KERNEL (it may sleep)" if c.event in gfp_events else "")
        msg = (f"{where(c.caller)} calls {what} {ctx}: it may sleep there, and a sleep in atomic context is a "
               f"kernel BUG (\"scheduling while atomic\"), whether or not it happened this time. "
               f"{'Use GFP_ATOMIC, or allocate before taking the lock.' if c.event in gfp_events else 'Move it out of the atomic section.'}")
        if msg not in seen:
            seen.add(msg)
            f.problems.append(msg)
    return f


def symbolizer(ko: Path, text_base: int) -> Callable[[int], str]:
    """caller address -> `function()` of the module's .text (a return address: the call is just before)."""
    res = subprocess.run(["objdump", "-t", str(ko)], capture_output=True, text=True, timeout=30)
    funcs = []
    for line in res.stdout.splitlines():
        m = re.match(r"^([0-9a-f]{16})\s.{7}\s\.text\s+([0-9a-f]+)\s+(\S+)$", line)
        if m and int(m.group(2), 16):
            funcs.append((int(m.group(1), 16), int(m.group(2), 16), m.group(3)))

    def where(addr: int) -> str:
        off = addr - 1 - text_base
        for start, size, name in funcs:
            if start <= off < start + size:
                return f"{name}()"
        return f"the code at {addr:#x}"

    return where
