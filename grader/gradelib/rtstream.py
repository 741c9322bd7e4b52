"""The event stream of labs 5 and 6: a watcher of a notes FIFO and button devices, one line per signal.

Lab 5's rtwatch (a SA_SIGINFO handler) and lab 6's sigwatch (no handler: sigwaitinfo(), a thread,
signalfd) print the same lines, and their tests drive them the same way:

    ready: fd 3 notes, fd 4 /dev/button
    signal 1: fd 4 POLL_IN band 0x41 (/dev/button)
    /dev/button: seq 7 pressed            /dev/button: lost 36: seq 8 to 43
    notes: note 1                         notes: end of file
    SIGIO: the signal queue overflowed; flushed 8 queued signals
    resynchronised
    holding / taking                      (SIGUSR1)

This module holds what both labs' tests use: starting the grader's writer of the FIFO, holding and
taking, reading a signal line and saying what is wrong with it, the records, the overflow scene.
Messages name the program by its own name (GuestProc.name).  The per-lab wording (which TODO, a
handler or a wait) comes in as arguments.
"""
from __future__ import annotations

import re
from typing import Callable

from .vmlab import GuestProc, VmLab, quote
from .witness import SignalCount

SIGNAL = re.compile(r"^signal (\d+): fd (-?\d+) (\S+) band (\S+)(?: \((.*)\))?$")
RECORD = re.compile(r"^(\S+): seq (\d+) (pressed|released)$")
LOST = re.compile(r"^(\S+): lost (\d+): seq (\d+) to (\d+)$")
FLUSHED = re.compile(r"^SIGIO: the signal queue overflowed; flushed (\d+) queued signals$")
POLL_IN, POLL_HUP = 1, 6
BAND_IN, BAND_HUP = "0x41", "0x18"  # si_band: POLLIN | POLLRDNORM; POLLHUP | POLLERR (fs/fcntl.c, x86)
LIMIT = 8  # RLIMIT_SIGPENDING of the overflow tests
BUTTON = "/dev/button"

# Why a program printed no `signal` line for an event, from what the kernel shows: (vm, w, path) -> text.
WhyNoSignal = Callable[[VmLab, GuestProc, str], str]


def fifo(w: GuestProc) -> str:
    """The program's notes FIFO (it runs in a folder of its own, where it makes `notes`)."""
    return f"{w.cwd}/notes"


def fd_of(vm: VmLab, w: GuestProc, path: str) -> int:
    """The program's descriptor of `path` (from /proc: what the kernel puts in si_fd)."""
    found = [fd for fd, target in w.fds().items() if target == path]
    if not found:
        vm.fail(w.explain(f"{w.name} does not have {path} open."))
    return found[0]


def writer(vm: VmLab, w: GuestProc) -> GuestProc:
    """The grader's writer of the program's notes FIFO: one `note K` line per SIGUSR1 (one write(2))."""
    n = vm.spawn("rtprobe", "notes", fifo(w), helper=True)
    got = n.expect(r"^(open|no-reader|open-error)")
    if got.startswith("open-error"):
        vm.fail(w.explain(refused(w, got)))
    if got != "open":
        vm.fail(w.explain(f"{w.name} does not have its FIFO `notes` open for reading (the grader's writer found "
                          "no reader)."))
    n.reader = w  # type: ignore[attr-defined]  # whose end of the FIFO it writes to (note() names it)
    return n


def refused(w: GuestProc, line: str) -> str:
    """The message for the writer's `open-error ...` line: it opens only a FIFO, and follows no link."""
    why = line[len("open-error "):].strip()
    return (f"The grader's writer (root) did not open `notes` in {w.name}'s folder: {why}. It writes only into a "
            "FIFO, and never through a symbolic link: make `notes` with mkfifo(3) and leave it there.")


def note(n: GuestProc) -> None:
    """One note written to the FIFO. When the writer cannot (SIGPIPE: the reader is gone), the cause is the
    reader's end, and the message is about the reader."""
    n.signal("USR1")
    got = n.expect(r"^(wrote [0-9]+|no-reader|write-error.*|open-error.*)$", fail=False)
    w: GuestProc | None = getattr(n, "reader", None)
    if got.startswith("open-error") and w is not None:
        n.vm.fail(w.explain(refused(w, got)))
    if got:
        return
    if w is not None and w.status() is not None:
        n.vm.fail(w.explain(f"The grader's writer could not write a note: {w.name}, which reads the FIFO, had "
                            "already ended."))
    n.expect(r"^(wrote [0-9]+|no-reader|write-error.*)$")


def hold(w: GuestProc, how: str = "blocks its signals") -> None:
    w.signal("USR1")
    w.expect(r"^holding$", msg=f"At SIGUSR1 {w.name} {how} and says `holding`.")


def take(w: GuestProc, how: str = "unblocks them") -> None:
    w.signal("USR1")
    w.expect(r"^taking$", msg=f"At the next SIGUSR1 {w.name} {how} and says `taking`.")


def finish(vm: VmLab, w: GuestProc, counts: str, sig: str = "TERM") -> list[str]:
    """SIGTERM (or SIGINT): the program prints its counts (`counts`, an example of the line) and exits 0.
    Its output lines."""
    w.signal(sig)
    if w.wait_exit(timeout=10) != 0:
        vm.fail(w.explain(f"At SIG{sig} {w.name} should print its counts (`{counts}`) and exit with status 0."))
    return w.output().splitlines()


def after(lines: list[str], marker: str) -> list[str]:
    """The lines after the last `marker` line."""
    idx = [i for i, ln in enumerate(lines) if ln == marker]
    return lines[idx[-1] + 1:] if idx else []


def kernel(vm: VmLab, w: GuestProc, sig: str) -> SignalCount:
    """The kernel's record of `sig` for the program (gradelib/witness.py)."""
    rec = vm.witness.record([w.pid]) if vm.witness else None
    if rec is None:
        vm.fail(f"The kernel's record of the signals is missing (a grader problem, not your code): "
                f"{vm.witness.error if vm.witness else 'no witness'}")
    return rec.count(w.pid, sig)


def signal_line(vm: VmLab, w: GuestProc, path: str, what: str, why: WhyNoSignal, code: str = "POLL_IN",
                band: str = BAND_IN) -> re.Match[str]:
    """The program's next `signal N: ...` line (for an event of `path`); none: fail, saying why."""
    line = w.expect(r"^signal ", fail=False)
    if not line:
        vm.fail(w.explain(f"{what}: {w.name} should print `signal N: fd F {code} band {band} ({path})`.\n  "
                          + why(vm, w, path)))
    m = SIGNAL.match(line)
    if not m:
        vm.fail(w.explain(f"{what}: {w.name} printed the line\n{quote(line)}\n  expected `signal N: fd F CODE band 0xB "
                          "(SOURCE)`."))
    return m


def expect_signal(vm: VmLab, w: GuestProc, m: re.Match[str], n: int | None, fd: int, code: str, band: str,
                  path: str, what: str, unnamed_ok: bool = False) -> None:
    """The signal line `m` is `signal n: fd FD CODE band BAND (PATH)`; if not, fail saying which part is wrong.
    unnamed_ok: the line may also end before ` (PATH)` (a program that does not name its sources yet)."""
    want = f"signal {n if n is not None else m.group(1)}: fd {fd} {code} band {band} ({path})"
    if unnamed_ok and m.group(5) is None:
        want = want[:-len(f" ({path})")]
    if m.group(0) != want:
        why = []
        if m.group(2) != str(fd):
            why.append(f"si_fd is the descriptor that turned O_ASYNC on: {fd} for {path}")
        if m.group(3) != code:
            why.append(f"si_code is the band the driver passed to kill_fasync(): {code}")
        if m.group(4) != band:
            why.append(f"si_band for {code} is {band}")
        if m.group(5) != path and m.group(2) == str(fd) and not (unnamed_ok and m.group(5) is None):
            why.append("find the source by its fd and name it")
        if n is not None and m.group(1) != str(n):
            why.append(f"number the signals main handles 1, 2, 3...: this is {n}")
        vm.fail(w.explain(f"{what}: {w.name} printed the line\n{quote(m.group(0))}\n  expected `{want}`"
                          + (" (" + "; ".join(why) + ")" if why else "") + "."))


def records(lines: list[str], path: str = BUTTON) -> list[tuple[int, str]]:
    """(seq, pressed|released) of each record of `path` the lines show."""
    return [(int(m.group(2)), m.group(3)) for m in map(RECORD.match, lines) if m and m.group(1) == path]


def notes_read(lines: list[str]) -> list[str]:
    return [ln[len("notes: "):] for ln in lines if ln.startswith("notes: note ")]


def press_release(vm: VmLab, w: GuestProc, why: WhyNoSignal) -> int:
    """A press and a release, each read: their seq numbers are the baseline.  The seq of the release."""
    vm.button("press")
    signal_line(vm, w, BUTTON, f"The button was pressed while {w.name} was watching", why)
    vm.button("release")
    signal_line(vm, w, BUTTON, f"The button was released while {w.name} was watching", why)
    w.expect(r"^/dev/button: seq [0-9]+ released$", msg=f"{w.name} reads the release's record after its signal.")
    got = records(w.output().splitlines())
    return got[-1][0]


def overflow(vm: VmLab, w: GuestProc, why: WhyNoSignal, killed: str, no_resync: str,
             holding: Callable[[GuestProc], None] = hold,
             taking: Callable[[GuestProc], None] = take) -> tuple[int, list[str]]:
    """The program `w` runs with RLIMIT_SIGPENDING = LIMIT: a press and a release (the baseline), then, held,
    100 events and three notes: LIMIT signals queue, the rest overflow into one SIGIO.  Taken again, it
    resynchronises.  Returns the seq before the burst and the lines from `taking` to `resynchronised`.
    `killed`: what to do when SIGIO killed it; `no_resync`: when it did not resynchronise; `holding` and
    `taking`: the lab's own hold and take (what its program does at SIGUSR1 differs from lab to lab)."""
    n = writer(vm, w)
    s0 = press_release(vm, w, why)
    holding(w)
    vm.button("burst 50 0")
    for _ in range(3):
        note(n)
    taking(w)
    line = w.expect(r"^resynchronised$", fail=False, timeout=10)
    if not line:
        io, rt = kernel(vm, w, "SIGIO"), kernel(vm, w, "SIGRTMIN")
        if w.status() == 128 + 29:
            vm.fail(w.explain(f"{w.name} was held through 100 events and 3 notes with RLIMIT_SIGPENDING {LIMIT}: "
                              f"{LIMIT} signals queued, then the queue was full ({rt.line}) and the kernel sent "
                              f"plain SIGIO instead, whose default action killed {w.name}. {killed}"))
        vm.fail(w.explain(f"The realtime queue overflowed ({rt.line}; {io.line}): at the SIGIO {w.name} "
                          f"should flush the queued signals, read every source and say `resynchronised` "
                          f"({no_resync})."))
    lines = w.output().splitlines()
    start = max(i for i, ln in enumerate(lines) if ln == "taking")
    end = max(i for i, ln in enumerate(lines) if ln == "resynchronised")
    return s0, lines[start + 1:end + 1]


def check_flushed(vm: VmLab, w: GuestProc, lines: list[str]) -> None:
    """After overflow(): exactly the LIMIT queued signals flushed, none handled as a signal, the queue empty."""
    flushed = [int(m.group(1)) for m in map(FLUSHED.match, lines) if m]
    stale = [ln for ln in lines if SIGNAL.match(ln)]
    rt = kernel(vm, w, "SIGRTMIN")
    own = [ln for ln in stale if (m := SIGNAL.match(ln)) and m.group(2) == "0" and m.group(3) == "code?"]
    if flushed == [LIMIT] and stale and own == stale:
        # The SIGIO's own siginfo (si_code SI_KERNEL, no fd: `fd 0 code?`) handled as one of the events.
        vm.fail(w.explain(f"The SIGIO that announced the overflow was also handled as a realtime signal: "
                          f"{w.name} printed\n{quote(own[0])}\n  SIGIO's own siginfo (si_code SI_KERNEL, no fd). "
                          "When the signal is SIGIO, resynchronise and stop there: it names no source."))
    if flushed != [LIMIT] or stale:
        vm.fail(w.explain(f"When the SIGIO came, the queue held {LIMIT} SIGRTMIN (RLIMIT_SIGPENDING {LIMIT}; "
                          f"{rt.line}), all stale: the resync reads every source anyway. Take them with "
                          f"sigtimedwait() and a zero timeout until EAGAIN, say `flushed {LIMIT}`, and handle none "
                          f"of them as a signal ({w.name} printed {len(stale)} `signal` lines during the resync)."))
    r = vm.run(f"grep SigQ /proc/{w.pid}/status", what=f"reading {w.name}'s queue")
    if not r.stdout.split()[1:2] == [f"0/{LIMIT}"]:
        vm.fail(w.explain(f"After the resync {w.name}'s queue should be empty; /proc says `{r.stdout.strip()}`."))


def check_counts_at_exit(vm: VmLab, w: GuestProc, lines: list[str], totals: re.Pattern[str], counts: str,
                         handled: str) -> None:
    """The program's last line (`counts`, an example; `totals` matches it, its groups `rt` and `io` the two
    numbers) against the kernel's taken counts: rt what it handled plus what it flushed, io the SIGIOs."""
    flushed = sum(int(m.group(1)) for m in map(FLUSHED.match, lines) if m)
    m = totals.match(lines[-1]) if lines else None
    rt, io = kernel(vm, w, "SIGRTMIN"), kernel(vm, w, "SIGIO")
    extra = int(m.group("rt")) + flushed - rt.taken if m else 0
    if m and extra > 0 and extra == io.taken - int(m.group("io")):
        # The numbers add up only if the flush took SIGIOs too, and counted them with the realtime signals.
        vm.fail(w.explain(f"{w.name}'s flush took SIGIO too: it says it flushed {flushed} and handled "
                          f"{m.group('rt')}, {extra} more than the kernel's SIGRTMIN taken ({rt.taken}), and "
                          f"counts {m.group('io')} overflows where the kernel had it take SIGIO {io.taken} times. "
                          "A SIGIO pending at the flush is a new overflow, not a stale event: flush with a set that "
                          "holds SIGRTMIN alone."))
    if not m or int(m.group("rt")) + flushed != rt.taken or int(m.group("io")) != io.taken:
        vm.fail(w.explain(f"{w.name}'s last line should be `{counts}`: N the realtime signals it {handled} (the "
                          f"kernel's taken, {rt.taken}, less the {flushed} it flushed) and M the SIGIOs (taken "
                          f"{io.taken})."))


def check_nothing_lost(vm: VmLab, w: GuestProc, s0: int, lines: list[str]) -> None:
    """After overflow(): every event of the burst read or named in a `lost` line, each once; the notes read."""
    covered: list[int] = []
    lost = 0
    for ln in lines:
        m = LOST.match(ln)
        if m and m.group(1) == BUTTON:
            a, b = int(m.group(3)), int(m.group(4))
            covered += range(a, b + 1)
            lost += int(m.group(2))
        m = RECORD.match(ln)
        if m and m.group(1) == BUTTON:
            covered.append(int(m.group(2)))
    want = list(range(s0 + 1, s0 + 101))
    twice = sorted({q for q in covered if covered.count(q) > 1})
    if twice and sorted(set(covered)) == want:
        vm.fail(w.explain(f"While {w.name} held its signals, `button burst 50 0` made events seq {s0 + 1} to "
                          f"{s0 + 100}; after the overflow each must be read or named in a `lost N: seq A to B` line "
                          f"once. Seq {', '.join(map(str, twice[:5]))}{'...' if len(twice) > 5 else ''} "
                          "came twice (named lost and read): a gap before seq S is `lost` up to S - 1."))
    if sorted(covered) != want or lost != len(want) - len(records(lines)):
        vm.fail(w.explain(f"While {w.name} held its signals, `button burst 50 0` made events seq {s0 + 1} to "
                          f"{s0 + 100}; the ring kept the newest 64. After the overflow every one of them must be "
                          "read or named in a `lost N: seq A to B` line, each once: after flushing, poll(2) every "
                          "source and read each that has something until EAGAIN."))
    if notes_read(lines) != ["note 1", "note 2", "note 3"]:
        vm.fail(w.explain("Three notes were written while the queue was full: the resync must read them too "
                          f"(it read {notes_read(lines)})."))


def one_press(vm: VmLab, w: GuestProc, why: WhyNoSignal, unnamed_ok: bool = False) -> None:
    """A press: one SIGRTMIN with the button's fd, POLL_IN and band 0x41, generated and taken once."""
    fd = fd_of(vm, w, BUTTON)
    vm.button("press")
    m = signal_line(vm, w, BUTTON, "The button was pressed once", why)
    expect_signal(vm, w, m, 1, fd, "POLL_IN", BAND_IN, BUTTON, "The button was pressed once", unnamed_ok=unnamed_ok)
    rt = kernel(vm, w, "SIGRTMIN")
    if rt.generated != 1 or rt.taken != 1:
        vm.fail(w.explain(f"One press should be one SIGRTMIN, generated and taken once ({rt.line})."))


def ten_held(vm: VmLab, w: GuestProc, why: WhyNoSignal, what: str, counts: str, unnamed_ok: bool = False,
             holding: Callable[[GuestProc], None] = hold, taking: Callable[[GuestProc], None] = take) -> list[str]:
    """Five clicks while the program holds its signals (`holding`, then `taking`): signals 1 to 10, each with
    the button's fd, POLL_IN and band 0x41, and the kernel's `generated 10, merged 0, taken 10`.  The output
    at SIGTERM."""
    fd = fd_of(vm, w, BUTTON)
    holding(w)
    for _ in range(5):
        vm.button("click")
    taking(w)
    for i in range(1, 11):
        m = signal_line(vm, w, BUTTON, f"{what}; signal {i} of 10", why)
        expect_signal(vm, w, m, i, fd, "POLL_IN", BAND_IN, BUTTON, f"{what}; signal {i} of 10", unnamed_ok=unnamed_ok)
    lines = finish(vm, w, counts)
    rt = kernel(vm, w, "SIGRTMIN")
    if rt.generated != 10 or rt.merged or rt.taken != 10:
        vm.fail(w.explain(f"{what}: a realtime signal queues once per event, so the kernel should say `generated "
                          f"10, merged 0, taken 10` ({rt.line})."))
    return lines


# flushinject (grader/harness/flushinject.c) writes `note injected` to the FIFO `notes` during the flush
FLUSHINJECT = {"preload": ("flushinject",), "env": {"FLUSHINJECT_FIFO": "notes"}}


def check_flush_injected(vm: VmLab, w: GuestProc, lines: list[str]) -> None:
    """After an overflow run under flushinject: the flush did not wait, and the note written during it was read
    by the same resync."""
    waited = re.search(r"^flushinject: (sigtimedwait with .*)$", w.output(), re.M)
    if waited:
        vm.fail(w.explain(f"{w.name} called {waited.group(1)}: the flush must not wait for a signal to come, only "
                          "take those already queued. Give sigtimedwait() a zero timeout ({0, 0}), and stop at "
                          "EAGAIN."))
    if "flushinject: wrote the note during the flush" not in w.output():
        vm.fail(w.explain(f"The grader's harness saw no flush: {w.name} should take the stale signals with "
                          "sigtimedwait() and a zero timeout before it reads the sources."))
    if "notes: note injected" not in lines:
        vm.fail(w.explain(f"The grader wrote a note to the FIFO while {w.name} was flushing (its signal was flushed "
                          "with the stale ones): the same resync must read it. Flush first, then poll and read: an "
                          "event whose signal the flush threw away happened before the reading, so the reading "
                          "sees it."))

