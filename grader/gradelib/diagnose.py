"""What a process that does not finish is doing, read from /proc, in words.

A program that hangs is killed at its timeout; just before that, the grader
looks at it once: its state (/proc/PID/stat), the kernel function it sleeps
in (/proc/PID/wchan) and the system call it is in (/proc/PID/syscall).  The
words say only what was seen ("asleep in futex(), a lock or condition
variable"), never a guess at the cause.  `describe()` takes the three files'
text, so the same words serve a process seen in the VM.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

# x86-64 system call numbers worth naming (arch/x86/entry/syscalls/syscall_64.tbl).
SYSCALLS = {
    0: "read", 1: "write", 7: "poll", 23: "select", 34: "pause", 35: "nanosleep", 61: "wait4",
    72: "fcntl", 130: "rt_sigsuspend", 128: "rt_sigtimedwait", 202: "futex", 230: "clock_nanosleep",
    232: "epoll_wait", 247: "waitid", 270: "pselect6", 271: "ppoll", 281: "epoll_pwait",
}
FUTEX = 202


@dataclass
class Snapshot:
    state: str = ""  # R, S, D, T, Z ... ('' if unknown)
    wchan: str = ""  # the kernel function it sleeps in ('' or '0' when running)
    syscall: int | None = None  # None: not in a system call, or unknown
    args: tuple[int, ...] = ()  # the system call's arguments

    @property
    def in_futex(self) -> bool:
        return self.state == "S" and self.syscall == FUTEX

    def words(self) -> str:
        if self.state in ("R",):
            return "running, not waiting for anything (an endless loop?)"
        if self.state == "T" or self.state == "t":
            return "stopped (SIGSTOP, SIGTSTP, SIGTTIN or a debugger)"
        if self.state == "Z":
            return "a zombie: it had exited, and nobody had reaped it"
        if self.state in ("S", "D"):
            where = f" (kernel function {self.wchan})" if self.wchan and self.wchan != "0" else ""
            if self.syscall == FUTEX:
                return f"asleep in futex(), waiting for a lock or a condition variable{where}"
            if self.syscall is not None and self.syscall in SYSCALLS:
                return f"asleep in the system call {SYSCALLS[self.syscall]}(){where}"
            return f"asleep in the kernel{where}"
        return ""


def describe(stat: str, wchan: str, syscall: str) -> Snapshot:
    """The snapshot from the text of /proc/PID/stat, wchan and syscall ('' for a file that could not be read)."""
    snap = Snapshot()
    try:
        snap.state = stat.rsplit(")", 1)[1].split()[0]
    except IndexError:
        pass
    snap.wchan = wchan.strip()
    fields = syscall.split()
    if fields and fields[0].lstrip("-").isdigit() and int(fields[0]) >= 0:
        snap.syscall = int(fields[0])
        try:
            snap.args = tuple(int(x, 16) for x in fields[1:7])
        except ValueError:
            snap.args = ()
    return snap


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def host(pid: int) -> Snapshot:
    """A process on this machine (reading syscall needs the right to trace it: same user, or root)."""
    proc = Path(f"/proc/{pid}")
    return describe(_read(proc / "stat"), _read(proc / "wchan"), _read(proc / "syscall"))


def futex_stall(pid: int, timeout: float, settle: float = 0.1, poll: float = 0.005) -> Snapshot | None:
    """Wait until the process sleeps in futex() and is still asleep on the same futex `settle` seconds
    later, with no CPU time spent meanwhile: it has stopped making progress.  The snapshot, or None if
    that did not happen within `timeout` seconds (or the process ended)."""

    def cpu() -> int:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])  # utime + stime
        except (OSError, IndexError, ValueError):
            return -1

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        first = host(pid)
        if first.state in ("", "Z"):
            return None
        if first.in_futex:
            used = cpu()
            time.sleep(settle)
            again = host(pid)
            if again.in_futex and again.args[:1] == first.args[:1] and cpu() == used:
                return again
        time.sleep(poll)
    return None
