"""The kernel's witness: what the kernel itself recorded about a test's signals.

Every VM image has /usr/bin/sigtrace (vm/sigtrace.c), which counts in tracefs
what the kernel did with each signal: generated (signal:signal_generate, by
the target's pid, so a SIGIO raised in an interrupt counts for its owner),
merged into one already pending, queue full, ignored, info lost, and taken
(a kretprobe on dequeue_signal: a handler, the default action, sigwaitinfo()
or signalfd).  The VM lab starts a recording before each test; a failing
test shows the record of the processes it started, one line per signal:

    kernel: SIGIO generated 200, merged 191, taken 9

and the timeline goes to report.txt.  Tests also use the record to check a
program's own counts: a program that prints the numbers the test expects,
without counting, does not pass.

The lines are sigtrace's own: this module parses them, it never formats a
second version of them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Protocol

START = "sigtrace start"
TIMELINE_LINES = 200  # of the timeline kept for report.txt (the first 3/4 and the last 1/4)

_PROC = re.compile(r"^pid (\d+) \((.*)\):$")
_COUNT = re.compile(r"^\s+(kernel: (\S+) generated (\d+), merged (\d+), taken (\d+)((?:, [a-z ]+ \d+)*))$")
_EXTRA = re.compile(r", ([a-z ]+) (\d+)")


class _Result(Protocol):
    status: int | None
    stdout: str
    stderr: str


Runner = Callable[[str, float], _Result]


@dataclass
class SignalCount:
    """One signal number's record for one process."""

    signal: str  # "SIGIO", "SIGRTMIN+1", ...
    generated: int
    merged: int
    taken: int
    queue_full: int = 0
    ignored: int = 0
    info_lost: int = 0
    line: str = ""  # "kernel: SIGIO generated 200, merged 191, taken 9", as sigtrace printed it


@dataclass
class ProcRecord:
    pid: int
    comm: str
    signals: dict[str, SignalCount] = field(default_factory=dict)


@dataclass
class Record:
    """What sigtrace showed: per process (the ones asked for and their children), notes, a timeline."""

    procs: dict[int, ProcRecord] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # sigtrace's warnings (a full table, a wrapped buffer)
    timeline: str = ""

    def signals(self, pid: int) -> dict[str, SignalCount]:
        p = self.procs.get(pid)
        return p.signals if p else {}

    def count(self, pid: int, signal: str) -> SignalCount:
        """The record of `signal` for `pid`; all zero if the kernel saw none."""
        return self.signals(pid).get(signal) or SignalCount(signal, 0, 0, 0, line=f"kernel: no {signal}")

    def summary(self, names: dict[int, str], show_empty: bool = False) -> str:
        """The message block: each process (named by the test) and its lines; "" when there is nothing
        to say (no signal at all, unless show_empty)."""
        out = []
        for pid, proc in sorted(self.procs.items()):
            # A process the test did not start is named by its comm, which the program chose (prctl): on one
            # line, quoted, so that it cannot pass for a line of the record.
            name = names.get(pid) or "a process named " + repr(proc.comm)
            if proc.signals:
                out.append(f"    {name} (pid {pid}):")
                out.extend(f"      {c.line}" for c in proc.signals.values())
            elif show_empty and pid in names:
                out.append(f"    {name} (pid {pid}): kernel: no signal")
        if not out:
            return ""
        head = "  The kernel's record of the signals in this test (sigtrace, from tracefs):"
        return "\n".join([head, *out, *("    " + n for n in self.notes)])


def parse(text: str) -> Record:
    """sigtrace show's output -> Record."""
    rec = Record()
    current: ProcRecord | None = None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("timeline "):
            rec.timeline = "\n".join(lines[i:])
            break
        m = _PROC.match(line)
        if m:
            current = rec.procs.setdefault(int(m.group(1)), ProcRecord(int(m.group(1)), m.group(2)))
            continue
        m = _COUNT.match(line)
        if m and current is not None:
            extra = {k: int(v) for k, v in _EXTRA.findall(m.group(6))}
            current.signals[m.group(2)] = SignalCount(
                m.group(2), int(m.group(3)), int(m.group(4)), int(m.group(5)), queue_full=extra.get("queue full", 0),
                ignored=extra.get("ignored", 0), info_lost=extra.get("info lost", 0), line=m.group(1))
        elif line.startswith("sigtrace: "):
            rec.notes.append(line)
    return rec


class Witness:
    """A recording per test, in the VM, through `run(command, timeout)` (a root shell in the guest)."""

    def __init__(self, run: Runner) -> None:
        self._run = run
        self.active = False
        self.error = ""

    def start(self) -> None:
        """A new recording (before each test). A failure only turns the witness off, with the reason."""
        r = self._run(START, 20.0)
        self.active = r.status == 0
        self.error = "" if self.active else f"`{START}` failed: {(r.stderr or r.stdout).strip()[:300]}"

    def record(self, pids: list[int], timeline: bool = False) -> Record | None:
        """The record of these processes and their children so far (None when there is none)."""
        if not self.active or not pids:
            return None
        opts = f"-t -n {TIMELINE_LINES} " if timeline else ""
        r = self._run(f"sigtrace show {opts}" + " ".join(f"-p {p}" for p in pids), 30.0)
        if r.status != 0:
            self.error = f"`sigtrace show` failed: {(r.stderr or r.stdout).strip()[:300]}"
            return None
        return parse(r.stdout)
