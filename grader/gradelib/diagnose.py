"""What state a program was in when the grader gave up on it, in words.

One helper for the host and the VM: the grader reads a process's
/proc/PID/status (state; signals pending, blocked, ignored, caught),
/proc/PID/wchan (the kernel function it sleeps in), /proc/PID/syscall (the
system call it is in) and, in the VM, /proc/PID/stack (where in a driver it
is stuck), and describe() says it the way a student can act on:

    asleep in pause() with SIGUSR1 blocked and pending: it can never wake
    asleep in read() in the kernel (button_read [button_driver]), not
    interruptible (state D): a signal cannot wake it

Only facts read from the process are stated; a cause is named only where the
state implies it (a signal blocked and pending while the process waits for
signals cannot wake it).
"""
from __future__ import annotations

import os
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

# x86_64 system call numbers of the calls a waiting program is likely to be in
SYSCALLS = {
    0: "read", 1: "write", 7: "poll", 16: "ioctl", 23: "select", 34: "pause", 35: "nanosleep",
    61: "wait4", 72: "fcntl", 128: "sigtimedwait", 129: "rt_sigqueueinfo", 130: "sigsuspend",
    202: "futex", 230: "clock_nanosleep", 232: "epoll_wait", 247: "waitid", 257: "openat", 270: "pselect6",
    271: "ppoll", 281: "epoll_pwait", 289: "signalfd4",
}
# calls that return when a signal handler runs, whatever SA_RESTART says
FUTEX = 202
SIGNAL_WAITS = {"pause", "sigsuspend", "sigtimedwait", "poll", "ppoll", "select", "pselect6", "epoll_wait",
                "epoll_pwait", "nanosleep", "clock_nanosleep"}
STATES = {"R": "running", "S": "asleep", "D": "asleep, not interruptible (state D)", "T": "stopped",
          "t": "stopped by a tracer", "Z": "a zombie (it has exited)", "X": "dead", "I": "idle"}


def _names(mask: int) -> list[str]:
    out = []
    for n in range(1, 65):
        if mask >> (n - 1) & 1:
            try:
                out.append(signal.Signals(n).name)
            except ValueError:
                out.append(f"SIGRTMIN+{n - signal.SIGRTMIN}" if n >= signal.SIGRTMIN else f"signal {n}")
    return out


@dataclass
class ProcState:
    state: str = ""  # R, S, D, T, Z...
    pending: int = 0  # thread's and process's
    blocked: int = 0
    ignored: int = 0
    caught: int = 0
    syscall: str = ""  # the system call it is in, when it sleeps in one
    syscall_nr: int | None = None  # its number (None: not in one, or not readable)
    args: tuple[int, ...] = ()  # its arguments
    wchan: str = ""
    stack: list[str] = field(default_factory=list)  # kernel frames (VM only)
    threads: int = 1  # of its process

    @property
    def in_futex(self) -> bool:
        return self.state == "S" and self.syscall_nr == FUTEX

    def describe(self) -> str:
        """One sentence: where it was and, when the state implies it, why it could not go on."""
        if not self.state:
            return "it had already ended"
        if self.state == "R":
            return "running, not waiting for anything (an endless loop?)"
        if self.in_futex and self.threads > 1:  # pthread_join() waits in futex() too
            others = "its other thread" if self.threads == 2 else f"one of its other {self.threads - 1} threads"
            return (f"asleep in futex(), waiting for {others}: in pthread_join(), or for a lock or a condition "
                    "variable")
        if self.in_futex:
            return "asleep in futex(), waiting for a lock or a condition variable (a lock that is never released?)"
        where = STATES.get(self.state, f"in state {self.state}")
        call = f" in {self.syscall}()" if self.syscall and self.state in "SD" else ""
        frames = [f for f in self.stack if not re.match(r"(__x64_sys|do_syscall|entry_SYSCALL|ksys_|vfs_|__se_sys"
                                                        r"|do_sys|__do_sys|new_sync|ret_from_fork)", f)]
        kernel = f" (in the kernel: {', '.join(frames[:3])})" if frames else (
            f" (in the kernel: {self.wchan})" if self.wchan and self.wchan != "0" and self.state == "D" else "")
        text = f"{where}{call}{kernel}"
        stuck = self.pending & self.blocked
        waits_for_signals = self.syscall in SIGNAL_WAITS
        # (during sigsuspend() the blocked set shown is the one it waits with)
        if stuck and waits_for_signals and self.syscall in ("pause", "sigsuspend", "poll", "select", "nanosleep",
                                                             "clock_nanosleep", "epoll_wait"):
            names = " and ".join(_names(stuck))
            return f"{text} with {names} blocked and pending: it can never wake"
        if self.syscall == "pause" and not self.pending:
            caught = _names(self.caught & ~self.ignored)
            return (f"{text}, waiting for a signal (handlers for {', '.join(caught) or 'no signal'}); none came, "
                    f"or the one it waited for was handled before pause() began")
        if self.state == "D":
            return f"{text}: a signal cannot wake it"
        if stuck:
            return f"{text}; {' and '.join(_names(stuck))} blocked and pending"
        return text


def _int32(x: int) -> int:
    return (x & 0xffffffff) - (1 << 32) if x & 0x80000000 else x & 0xffffffff


def untimed_wait(st: ProcState) -> str:
    """The call a thread sleeps in when nothing but another event can end it: no timeout, no signal of its
    own on the way (pending and not blocked); "" otherwise (running, a timed wait, waiting for a child)."""
    if st.state in ("T", "t"):
        return "stopped"
    if st.state != "S" or st.syscall_nr is None or st.pending & ~st.blocked:
        return ""
    nr, a = st.syscall_nr, st.args + (0,) * (6 - len(st.args))
    untimed = {
        34: True, 130: True,  # pause, rt_sigsuspend
        0: True, 17: True, 19: True,  # read, pread64, readv: a blocking read has no timeout
        128: a[2] == 0,  # rt_sigtimedwait: no timespec
        7: _int32(a[2]) < 0,  # poll: timeout -1
        271: a[2] == 0, 23: a[4] == 0, 270: a[4] == 0,  # ppoll, select, pselect6: no timeout
        232: _int32(a[3]) < 0, 281: _int32(a[3]) < 0, 441: a[3] == 0,  # epoll_wait, epoll_pwait(2)
        202: (a[1] & 0x7f) in (0, 9) and a[3] == 0,  # futex: FUTEX_WAIT(_BITSET) with no timeout
    }.get(nr, False)
    return f"{st.syscall}()" if untimed else ""


def parse(status: str, wchan: str = "", syscall: str = "", stack: str = "") -> ProcState:
    """A ProcState from the text of /proc/PID/status, wchan, syscall and stack."""
    st = ProcState()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    st.state = fields.get("State", "").strip()[:1]
    threads = fields.get("Threads", "1").strip()
    st.threads = int(threads) if threads.isdigit() else 1

    def mask(name: str) -> int:
        try:
            return int(fields.get(name, "0").strip() or "0", 16)
        except ValueError:
            return 0

    st.pending = mask("SigPnd") | mask("ShdPnd")
    st.blocked, st.ignored, st.caught = mask("SigBlk"), mask("SigIgn"), mask("SigCgt")
    st.wchan = wchan.strip()
    words = syscall.split()
    if words and words[0].lstrip("-").isdigit() and int(words[0]) >= 0:
        st.syscall_nr = int(words[0])
        st.syscall = SYSCALLS.get(st.syscall_nr, f"system call {words[0]}")
        try:
            st.args = tuple(int(x, 16) for x in words[1:7])
        except ValueError:
            st.args = ()
    for line in stack.splitlines():
        m = re.match(r"\[<[0-9a-f]+>\]\s+(\S+?)(\+0x[0-9a-f]+/0x[0-9a-f]+)?(\s+\[(\S+)\])?$", line.strip())
        if m:
            st.stack.append(m.group(1) + (f" [{m.group(4)}]" if m.group(4) else ""))
    return st


def host(pid: int) -> ProcState:
    """The state of a host process now (an empty state, state "", when it is gone)."""
    return snapshot(pid) or ProcState()


def futex_stall(pid: int, timeout: float, settle: float = 0.1, poll: float = 0.005) -> ProcState | None:
    """Wait until the process sleeps in futex() and is still asleep on the same futex `settle` seconds
    later, with no CPU time spent meanwhile: it has stopped making progress.  The state, or None if
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


def others_only_sleep(pid: int) -> bool:
    """Whether every thread of the process but its first sleeps in nanosleep() or clock_nanosleep()
    (as the sanitizers' background thread does), so that none can release a lock the first waits for."""
    try:
        tids = [t for t in os.listdir(f"/proc/{pid}/task") if t != str(pid)]
        return all(Path(f"/proc/{pid}/task/{t}/syscall").read_text().split()[0] in ("35", "230") for t in tids)
    except (OSError, IndexError):
        return False


def snapshot(pid: int) -> ProcState | None:
    """The state of a host process now (None when it is gone)."""
    base = Path(f"/proc/{pid}")

    def read(name: str) -> str:
        try:
            return (base / name).read_text(errors="replace")
        except OSError:
            return ""

    status = read("status")
    if not status:
        return None
    st = parse(status, read("wchan"), read("syscall"), read("stack"))
    if st.threads > 1 and others_only_sleep(pid):
        st.threads = 1  # the sanitizers' background thread (in every graded host program) is not the program's
    return st


# The same facts read in the VM by the grader's shell, for a pid in $p.
GUEST_SCRIPT = ("echo '--status'; cat /proc/$p/status 2>/dev/null; echo '--wchan'; cat /proc/$p/wchan 2>/dev/null; "
                "echo; echo '--syscall'; cat /proc/$p/syscall 2>/dev/null; echo '--stack'; "
                "cat /proc/$p/stack 2>/dev/null; echo '--end'")


def parse_guest(text: str) -> ProcState | None:
    """A ProcState from GUEST_SCRIPT's output (None when the process was gone)."""
    parts: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if line.startswith("--") and line[2:] in ("status", "wchan", "syscall", "stack", "end"):
            key = line[2:]
            parts[key] = ""
        elif key:
            parts[key] += line + "\n"
    if not parts.get("status", "").strip():
        return None
    return parse(parts.get("status", ""), parts.get("wchan", ""), parts.get("syscall", ""), parts.get("stack", ""))
