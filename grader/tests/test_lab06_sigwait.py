"""Lab 6: no handlers: sigwaitinfo(), a waiting thread, signalfd and epoll (sigwatch), graded in the VM.

One boot for the whole lab.  sigwatch is lab 5's rtwatch rewritten without a handler, and prints the
same event stream (gradelib/rtstream.py), so the tests drive it as lab 5's drive rtwatch: the
reference driver of lab 3 (/dev/button, one POLL_IN per event) and a FIFO of notes written by the
grader's rtprobe.  Lab 6 has no driver of its own.

What the tests cannot see from outside they ask the kernel:
- the mask: while a thread waits in sigtimedwait() the kernel unblocks the signals it waits for
  (do_sigtimedwait() in kernel/signal.c), so SigBlk in /proc shows less than the program blocked.
  A stopped thread has left its wait and has its own mask back: the tests stop sigwatch (SIGSTOP),
  read SigBlk and SigCgt of each /proc/PID/task/*, and continue it;
- where a signal is pending: SigPnd of one thread (F_OWNER_TID) or ShdPnd, the process's;
- the counts: the kernel's record of the signals (gradelib/witness.py).
"""
from __future__ import annotations

import re
import signal

import pytest

from gradelib import graded
from gradelib import rtstream
from gradelib.lab import Program
from gradelib.rtstream import (BAND_IN, BUTTON, FLUSHED, LIMIT, after, check_flushed, check_nothing_lost,
                               expect_signal, fd_of, fifo, kernel, note, notes_read, records, writer)
from gradelib.vmlab import GuestProc, VmLab, VmLabSpec, quote

LAB = VmLabSpec(
    6, "06-sigwaitinfo",
    programs={"sigwatch": Program(["sigwatch.c"], sanitize=False, ldflags=["-pthread"])},
    helpers=("rtprobe",),
    harness=("asyncorder", "flushinject"),
    devices=(BUTTON,),
    reference="03-fasync-button",
    signals=True,
)

TOTALS = re.compile(r"^sigwatch: (SIGINT|SIGTERM) \((\S+)\): (?P<rt>\d+) signals, (?P<io>\d+) overflows$")
COUNTS = "sigwatch: SIGTERM (SI_USER): N signals, M overflows"
# The signals sigwatch takes, as bits of /proc's masks (signal N is bit N-1); SIGRTMIN is 34 with glibc.
SIGINT, SIGUSR1, SIGTERM, SIGIO, SIGRTMIN = 2, 10, 15, 29, 34
WATCHED = {"SIGINT": SIGINT, "SIGUSR1": SIGUSR1, "SIGTERM": SIGTERM, "SIGIO": SIGIO, "SIGRTMIN": SIGRTMIN}
SYS_RT_SIGTIMEDWAIT, SYS_EPOLL_WAIT, SYS_EPOLL_PWAIT, SYS_PAUSE = 128, 232, 281, 34  # x86-64


# --- sigwatch, and what the kernel says about it ---------------------------------------------

def watch(vm: VmLab, *opts: str, **kw) -> GuestProc:
    """sigwatch OPTS notes /dev/button (lab 3's driver), as the user student, once it says `ready`."""
    vm.use_driver("reference")
    w = vm.spawn("sigwatch", *opts, "notes", BUTTON, sigsafe=False, **kw)
    w.expect("^ready", msg="sigwatch prints a line starting with `ready` once its sources are set up.")
    return w


def hold(w: GuestProc) -> None:
    rtstream.hold(w, "stops waiting for the sources' signals (SIGUSR1 is one it blocks, TODO 1, and takes, TODO 3)")


def take(w: GuestProc) -> None:
    w.signal("USR1")
    try:
        w.expect(r"^taking$", msg="At the next SIGUSR1 sigwatch waits for the sources' signals again and says "
                 "`taking`.")
    except pytest.fail.Exception:
        st = w.status()
        if st is None or st - 128 not in (signal.SIGIO, signal.SIGRTMIN):
            raise
        w.vm.fail(w.explain(f"At the second SIGUSR1 sigwatch should say `taking` and wait for the sources' signals "
                            f"again; {signal.Signals(st - 128).name} killed it instead: taking unblocked the "
                            "signals that had queued. In sigwatch they stay blocked from start to end; holding "
                            "only takes them out of the set it waits for, and taking puts them back (TODO 3)."))


def finish(vm: VmLab, w: GuestProc, sig: str = "TERM") -> list[str]:
    return rtstream.finish(vm, w, COUNTS.replace("TERM", sig), sig)


def why_no_signal(vm: VmLab, w: GuestProc, path: str) -> str:
    """Why sigwatch printed no signal line for an event of `path`, from what the kernel shows."""
    rt = kernel(vm, w, "SIGRTMIN")
    st = w.status()
    if st == 128 + SIGRTMIN:
        return (f"sigwatch was killed by SIGRTMIN ({rt.line}): the signal was not blocked when the event came, so "
                "its default action ran. Block every signal sigwatch takes with pthread_sigmask() at the start of "
                "main, before any O_ASYNC and any thread (TODO 1).")
    if st is not None:
        return w.describe(st) + "."
    out = w.output()
    printed = len(re.findall(r"^signal \d+:", out, re.M))
    held = re.search(r"^holding$(.*?)(^taking$|\Z)", out, re.M | re.S)  # the first hold, up to its take
    opts = w.what.split()[1:]
    if held and re.search(r"^signal \d+:", held.group(1), re.M):
        how = (" With -s that set is the signalfd's mask: give the same fd the new mask, signalfd(sfd, &mask, 0), "
               "when holding and when taking (TODO 6)." if "-s" in opts else "")
        return ("sigwatch printed `signal N:` lines while holding (after `holding`, before `taking`): holding must "
                "wait without the sources' signals (SIGRTMIN and SIGIO), so that they stay queued until "
                f"`taking`.{how}")
    if rt.taken > printed:
        if "-s" in opts:
            return (f"The kernel says sigwatch took SIGRTMIN {rt.taken} times (read from its signalfd), and it "
                    f"printed {printed} `signal N:` lines: one read(2) of a signalfd returns as many struct "
                    "signalfd_siginfo as fit and are queued; act on each one it returned (TODO 6).")
        return (f"The kernel says sigwatch took SIGRTMIN {rt.taken} times, and it printed {printed} `signal N:` "
                "lines: act on every signal the wait returns, SIGRTMIN: dispatch() (TODO 3).")
    if rt.generated > rt.taken:
        sc = syscall(vm, w.pid)
        where = " (it sleeps in pause(): that waits for a handler, and there is none)" if sc == SYS_PAUSE else ""
        if "-T" in opts:
            return (f"The kernel queued SIGRTMIN ({rt.line}) but sigwatch's waiting thread did not take "
                    f"{'it' if not rt.taken else 'them all'}: with -T the file's signals must go to that thread, "
                    "F_SETOWN_EX with F_OWNER_TID and the thread's own id (gettid() in it), not the process's "
                    "pid, which names the first thread (TODO 5).")
        if "-s" in opts:
            return (f"The kernel queued SIGRTMIN ({rt.line}) but sigwatch did not take "
                    f"{'it' if not rt.taken else 'them all'} from its signalfd: the signalfd's mask must be the "
                    "signals it waits for (updated when it holds and takes), and its epoll entry level-triggered "
                    "(EPOLLIN, not EPOLLET: an edge is reported once, however many signals are queued) (TODO 6).")
        return (f"The kernel queued SIGRTMIN for sigwatch ({rt.line}) but sigwatch did not take "
                f"{'it' if not rt.taken else 'them all'}{where}: take it with sigwaitinfo() (TODO 2).")
    if rt.generated:
        return f"The kernel's record: {rt.line}; sigwatch printed {printed} `signal N:` lines."
    return f"The kernel sent sigwatch no signal for {path}'s event."


def signal_line(vm: VmLab, w: GuestProc, path: str, what: str) -> re.Match[str]:
    return rtstream.signal_line(vm, w, path, what, why_no_signal)


def syscall(vm: VmLab, tid: int) -> int | None:
    """The system call thread `tid` sleeps in (/proc/TID/syscall), or None."""
    out = vm.run(f"cat /proc/{tid}/syscall 2>/dev/null", what="reading /proc/PID/syscall").stdout.split()
    return int(out[0]) if out and out[0].lstrip("-").isdigit() else None


def tasks(vm: VmLab, w: GuestProc) -> list[int]:
    """The threads of sigwatch (the first is the process's pid)."""
    r = vm.run(f"ls /proc/{w.pid}/task", what="listing sigwatch's threads")
    return sorted(int(t) for t in r.stdout.split() if t.isdigit())


def masks(vm: VmLab, w: GuestProc, tid: int) -> dict[str, int]:
    """{SigPnd, ShdPnd, SigBlk, SigCgt...: mask} of one thread."""
    r = vm.run(f"cat /proc/{w.pid}/task/{tid}/status", what="reading a thread's status")
    return {k: int(v, 16) for k, v in re.findall(r"^(Sig\w+|ShdPnd):\s+([0-9a-f]+)$", r.stdout, re.M)}


def names(mask: int, sigs: dict[str, int] = WATCHED) -> list[str]:
    return [n for n, s in sigs.items() if mask & (1 << (s - 1))]


def stopped(vm: VmLab, w: GuestProc) -> None:
    """SIGSTOP sigwatch and wait until every thread has stopped: each has left its wait, and its mask in /proc
    is its own again (a thread in sigtimedwait() has the signals it waits for unblocked meanwhile)."""
    w.signal("STOP")
    vm.run(f"p={w.pid}; i=0; while [ $i -lt 300 ]; do n=0; for t in /proc/$p/task/*; do "
           f"s=$(sed 's/.*) //' $t/stat | cut -c1); [ \"$s\" = T ] || n=1; done; [ $n = 0 ] && exit 0; "
           f"usleep 10000; i=$((i+1)); done; exit 1", timeout=10, what="waiting for sigwatch to stop")


def continued(vm: VmLab, w: GuestProc) -> None:
    w.signal("CONT")


# --- Task 1: block, then wait ------------------------------------------------------------------

@pytest.mark.prereq
def test_sigwatch_builds(vm_lab: VmLab) -> None:
    vm_lab.build.program("sigwatch")


@graded(task=1, points=5)
def test_a_press_is_one_sigrtmin_taken_with_the_buttons_fd_poll_in_and_band_0x41(vm: VmLab) -> None:
    rtstream.one_press(vm, watch(vm), why_no_signal)


@graded(task=1, points=5)
def test_ten_events_while_held_are_ten_signals_each_read_once_in_order(vm: VmLab) -> None:
    w = watch(vm)
    what = "Five clicks (ten events) happened while sigwatch held the sources' signals"
    lines = rtstream.ten_held(vm, w, why_no_signal, what, COUNTS, holding=hold, taking=take)
    seqs = [s for s, _ in records(after(lines, "taking"))]
    if len(seqs) != 10 or seqs != list(range(seqs[0], seqs[0] + 10)):
        vm.fail(w.explain(f"{what}: its ten records should each be read once, in order (the first signal's drain "
                          f"reads them all); sigwatch read {seqs}."))
    m = TOTALS.match(lines[-1]) if lines else None
    if not m or m.group(3, 4) != ("10", "0"):
        vm.fail(w.explain("At SIGTERM sigwatch's last line should count the ten signals it dispatched: "
                          "`sigwatch: SIGTERM (SI_USER): 10 signals, 0 overflows`."))


@graded(task=1, points=4)
def test_sigwatch_has_no_handler_and_blocks_every_signal_it_takes(vm: VmLab) -> None:
    w = watch(vm)
    stopped(vm, w)
    st = masks(vm, w, w.pid)
    continued(vm, w)
    caught, unblocked = names(st.get("SigCgt", 0)), [n for n in WATCHED if n not in names(st.get("SigBlk", 0))]
    if caught:
        vm.fail(w.explain(f"sigwatch has a handler for {', '.join(caught)} (SigCgt in /proc/PID/status): lab 6 has "
                          "none. Block the signals and take them with sigwaitinfo()."))
    if unblocked:
        vm.fail(w.explain(f"sigwatch does not block {', '.join(unblocked)} (SigBlk in /proc/PID/status, read while "
                          "it was stopped, out of its wait): a signal sigwatch takes must stay blocked from the "
                          "start (TODO 1), or it is delivered whenever it comes: its default action terminates."))


@graded(task=1, points=3)
def test_the_signals_are_blocked_before_o_async_turns_them_on(vm: VmLab) -> None:
    # asyncorder (grader/harness/asyncorder.c) looks at the mask of the thread that turns O_ASYNC on, then.
    for opts in ((), ("-T",)):
        w = watch(vm, *opts, preload=("asyncorder",), env={"ASYNCORDER_BLOCKED": "1", "ASYNCORDER_SETSIG": "1"})
        found = re.findall(r"^asyncorder: (.+)$", w.output(), re.M)
        wrong = sorted({f for f in found if f != "O_ASYNC turned on"})
        if found.count("O_ASYNC turned on") < 2:
            vm.fail(w.explain(f"sigwatch {' '.join(opts)} turned O_ASYNC on for fewer than its 2 sources."))
        if wrong:
            vm.fail(w.explain(f"sigwatch {' '.join(opts)}: " + "; ".join(wrong) + ". Block the signals first "
                              "(TODO 1), before any source is set up and before any thread is created: an event "
                              "between O_ASYNC and the wait would end the process."))


@graded(task=1, points=5)
def test_events_of_two_sources_are_told_apart_by_si_fd(vm: VmLab) -> None:
    w = watch(vm)
    fds = {BUTTON: fd_of(vm, w, BUTTON), "notes": fd_of(vm, w, fifo(w))}
    n = writer(vm, w)
    hold(w)
    vm.button("press")
    note(n)
    vm.button("release")
    note(n)
    take(w)
    what = "While sigwatch held the sources' signals: a press, a note, a release, a note"
    for i, src in enumerate([BUTTON, "notes", BUTTON, "notes"], 1):
        m = signal_line(vm, w, src, f"{what}; signal {i} of 4")
        expect_signal(vm, w, m, i, fds[src], "POLL_IN", BAND_IN, src, f"{what}; signal {i} of 4 (realtime "
                      "signals are taken in the order they were queued)")
    lines = after(finish(vm, w), "taking")
    if [p for _, p in records(lines)] != ["pressed", "released"] or notes_read(lines) != ["note 1", "note 2"]:
        vm.fail(w.explain(f"{what}: both records and both notes should be read, each source after a signal of its "
                          "own fd."))


@graded(task=1, points=5)
def test_sigint_and_sigterm_end_the_loop_with_the_counts_and_status_0(vm: VmLab) -> None:
    for sig in ("INT", "TERM"):
        w = watch(vm)
        n = writer(vm, w)
        note(n)
        w.expect(r"^notes: note 1$", msg="A note was written to the FIFO; sigwatch should read it.")
        lines = finish(vm, w, sig)
        m = TOTALS.match(lines[-1]) if lines else None
        if not m or m.group(1) != f"SIG{sig}" or m.group(3, 4) != ("1", "0"):
            vm.fail(w.explain(f"At SIG{sig} sigwatch should leave its loop and print `sigwatch: SIG{sig} (SI_USER): "
                              "1 signals, 0 overflows` last (one note's signal dispatched), then exit 0."))
        k = kernel(vm, w, f"SIG{sig}")
        if k.taken != 1:
            vm.fail(w.explain(f"SIG{sig} should be taken once, by the wait ({k.line})."))


@graded(task=1, points=3)
def test_with_a_timeout_sigwatch_says_so_and_waits_again(vm: VmLab) -> None:
    w = watch(vm, "-t", "200")
    line = w.expect(r"^timeout", fail=False, timeout=5)
    if line != "timeout: no signal in 200 ms":
        vm.fail(w.explain("sigwatch -t 200 with nothing happening should say `timeout: no signal in 200 ms` every "
                          "200 ms: sigtimedwait() with that timeout fails with EAGAIN (TODO 2), and the loop says "
                          "so (TODO 3). " + (f"It printed\n{quote(line)}" if line else
                                             "It printed no timeout line within 5 s: a struct timespec is seconds "
                                             "and nanoseconds, so 200 ms is { 0, 200000000 }.")))
    # at most one line per 200 ms: a timeout in the wrong unit (microseconds) spins instead of waiting
    before = w.output().count("\ntimeout")
    vm.run("usleep 1000000", timeout=10)
    more = w.output().count("\ntimeout") - before
    if more > 7:
        vm.fail(w.explain(f"sigwatch -t 200 said `timeout` {more} times in one second; it should wait 200 ms each "
                          "time (at most 5 or 6 a second). A struct timespec is seconds and nanoseconds: 200 ms is "
                          "{ 0, 200000000 } (tv_nsec = ms % 1000 * 1000000)."))
    vm.button("press")
    signal_line(vm, w, BUTTON, "After a timeout, the button was pressed")
    w.expect(r"^timeout", msg="After the press sigwatch should wait with its timeout again.")
    calls = {syscall(vm, w.pid) for _ in range(3)}
    if calls - {SYS_RT_SIGTIMEDWAIT, None}:
        vm.fail(w.explain(f"sigwatch should wait in sigtimedwait() (rt_sigtimedwait, system call "
                          f"{SYS_RT_SIGTIMEDWAIT}); /proc/PID/syscall shows {sorted(c for c in calls if c)}."))


@graded(task=1, points=3)
def test_a_stop_and_a_continue_interrupt_the_wait_and_sigwatch_goes_on(vm: VmLab) -> None:
    w = watch(vm)
    stopped(vm, w)
    continued(vm, w)
    vm.button("press")
    line = w.expect(r"^signal ", fail=False)
    if not line:
        vm.fail(w.explain("sigwatch was stopped (SIGSTOP) and continued (SIGCONT) while it waited, then the button "
                          "was pressed. The stop makes sigwaitinfo() fail with EINTR, handler or not (signal(7), "
                          "\"Interruption of system calls\"): wait again (TODO 2), do not give up.\n  "
                          + why_no_signal(vm, w, BUTTON)))
    if re.search(r"^timeout", w.output(), re.M):
        vm.fail(w.explain("sigwatch runs without -t here, yet after the stop it printed a `timeout` line: EINTR is "
                          "not a timeout. sigwaitinfo() and sigtimedwait() return -1 with errno EINTR after a stop; "
                          "only sigtimedwait()'s EAGAIN means the time ran out. Wait again on EINTR (TODO 2)."))


TIMESPEC_1500 = ("sigwatch -t 1500 with nothing happening should say `timeout: no signal in 1500 ms`. A struct "
                 "timespec is whole seconds and nanoseconds below one second: 1500 ms is { 1, 500000000 } (tv_sec = "
                 "ms / 1000, tv_nsec = ms % 1000 * 1000000); a tv_nsec of a second or more makes sigtimedwait() "
                 "fail with EINVAL.")


@graded(task=1, points=2)
def test_a_timeout_over_a_second_outlasts_a_stop_and_then_expires(vm: VmLab) -> None:
    w = watch(vm, "-t", "1500")
    vm.run("usleep 200000", timeout=10)
    if w.status() is not None:
        vm.fail(w.explain(TIMESPEC_1500 + " It ended before any signal came."))
    stopped(vm, w)
    continued(vm, w)
    vm.run("usleep 500000", timeout=10)
    early = re.findall(r"^timeout.*$", w.output(), re.M)
    if early:
        vm.fail(w.explain(f"sigwatch -t 1500 was stopped and continued at once, and within 0.5 s it printed "
                          f"`{early[0]}`: the stop made sigtimedwait() fail with EINTR, which is not a timeout. Only "
                          "EAGAIN means the time ran out; on EINTR wait again (TODO 2)."))
    line = w.expect(r"^timeout", fail=False, timeout=5)
    if line != "timeout: no signal in 1500 ms":
        vm.fail(w.explain(TIMESPEC_1500 + " " + (f"It printed\n{quote(line)}" if line else
                                                 "It printed no timeout line within 5 s.")))


# --- Task 2: when the queue is full ------------------------------------------------------------------

def overflow(vm: VmLab, *opts: str, **kw) -> tuple[GuestProc, int, list[str]]:
    w = watch(vm, *opts, sigpending=LIMIT, **kw)
    s0, lines = rtstream.overflow(vm, w, why_no_signal,
                                  "SIGIO is one of the signals sigwatch blocks and waits for (TODO 1, TODO 2).",
                                  "TODO 3 and TODO 4", holding=hold, taking=take)
    return w, s0, lines


@graded(task=2, points=2)
def test_a_full_queue_s_sigio_is_taken_and_starts_a_resync(vm: VmLab) -> None:
    w, _, lines = overflow(vm)
    rt, io = kernel(vm, w, "SIGRTMIN"), kernel(vm, w, "SIGIO")
    if not rt.queue_full or io.taken != 1:
        vm.fail(w.explain(f"With RLIMIT_SIGPENDING {LIMIT} and 103 events held, the queue should fill and one "
                          f"SIGIO be taken ({rt.line}; {io.line})."))
    if not any(FLUSHED.match(ln) for ln in lines) or w.status() is not None:
        vm.fail(w.explain("After the SIGIO sigwatch should say `SIGIO: the signal queue overflowed; flushed N queued "
                          "signals`, read the sources, and go on."))


@graded(task=2, points=2)
def test_the_flush_does_not_wait_and_an_event_during_it_is_read_by_the_same_resync(vm: VmLab) -> None:
    w, _, lines = overflow(vm, **rtstream.FLUSHINJECT)
    rtstream.check_flush_injected(vm, w, lines)


@graded(task=2, points=6)
def test_the_resync_flushes_exactly_the_signals_left_in_the_queue(vm: VmLab) -> None:
    w, _, lines = overflow(vm)
    check_flushed(vm, w, lines)


@graded(task=2, points=6)
def test_after_an_overflow_every_event_is_read_or_named_lost_and_every_note_read(vm: VmLab) -> None:
    w, s0, lines = overflow(vm)
    check_nothing_lost(vm, w, s0, lines)


@graded(task=2, points=4)
def test_the_counts_at_exit_are_the_kernel_s(vm: VmLab) -> None:
    w, _, _ = overflow(vm)
    vm.button("burst 200 0", timeout=60)  # not held: the queue fills and empties as it goes
    rtstream.check_counts_at_exit(vm, w, finish(vm, w), TOTALS, COUNTS, "dispatched")


# --- Task 3: a thread that waits ----------------------------------------------------------------------

@graded(task=3, points=10)
def test_every_thread_of_sigwatch_t_has_the_signals_blocked(vm: VmLab) -> None:
    w = watch(vm, "-T")
    stopped(vm, w)
    threads = tasks(vm, w)
    got = {t: masks(vm, w, t) for t in threads}
    continued(vm, w)
    if len(threads) < 2:
        vm.fail(w.explain("sigwatch -T should wait in a thread of its own, created with pthread_create() (TODO 5); "
                          "it has one thread."))
    wrong = [f"thread {t}{' (the first)' if t == w.pid else ''}: {', '.join(miss)} not blocked"
             for t, st in got.items()
             if (miss := [n for n in WATCHED if n not in names(st.get("SigBlk", 0))])]
    if wrong:
        vm.fail(w.explain("Every thread of sigwatch -T must have its signals blocked (SigBlk of each "
                          "/proc/PID/task/TID/status, read while it was stopped): a process-directed signal goes "
                          "to any thread that does not block it, and its default action ends the process. A new "
                          "thread inherits its creator's mask: block first (TODO 1), then pthread_create().\n  "
                          + "\n  ".join(wrong)))


@graded(task=3, points=5)
def test_with_t_the_files_signals_are_pending_for_the_waiting_thread(vm: VmLab) -> None:
    w = watch(vm, "-T")
    hold(w)
    vm.button("press")
    vm.button("release")
    got = {t: masks(vm, w, t) for t in tasks(vm, w)}
    take(w)
    bit = 1 << (SIGRTMIN - 1)
    shared = got[w.pid].get("ShdPnd", 0) & bit
    own = [t for t, st in got.items() if st.get("SigPnd", 0) & bit]
    if shared or own == [w.pid] or not own:
        where = "pending for the whole process (ShdPnd)" if shared else \
            "pending for the first thread" if own else "not pending"
        vm.fail(w.explain("sigwatch -T held through a press and a release: their SIGRTMIN should be pending for the "
                          f"thread that waits (SigPnd of its /proc/PID/task/TID), and they were {where}. Direct each "
                          "file's signals to that thread: F_SETOWN_EX with F_OWNER_TID and gettid(), called in the "
                          "thread (TODO 5)."))
    for i in (1, 2):
        signal_line(vm, w, BUTTON, f"sigwatch -T was held through a press and a release; signal {i} of 2")


@graded(task=3, points=5)
def test_with_t_ten_events_while_held_are_ten_signals_read_once(vm: VmLab) -> None:
    w = watch(vm, "-T")
    fd = fd_of(vm, w, BUTTON)
    hold(w)
    for _ in range(5):
        vm.button("click")
    take(w)
    what = "sigwatch -T: five clicks (ten events) while held"
    for i in range(1, 11):
        m = signal_line(vm, w, BUTTON, f"{what}; signal {i} of 10")
        expect_signal(vm, w, m, i, fd, "POLL_IN", BAND_IN, BUTTON, f"{what}; signal {i} of 10")
    lines = finish(vm, w)
    seqs = [s for s, _ in records(after(lines, "taking"))]
    if len(seqs) != 10 or seqs != list(range(seqs[0], seqs[0] + 10)):
        vm.fail(w.explain(f"{what}: the ten records should each be read once; sigwatch read {seqs}."))


# --- Task 4: signalfd and epoll ---------------------------------------------------------------------------

@graded(task=4, points=5)
def test_with_s_the_signals_are_read_from_a_signalfd_in_an_epoll_set(vm: VmLab) -> None:
    w = watch(vm, "-s", "-t", "200")
    line = w.expect(r"^timeout", fail=False, timeout=5)
    if line != "timeout: no signal in 200 ms":
        vm.fail(w.explain("sigwatch -s -t 200 with nothing happening should say `timeout: no signal in 200 ms`: "
                          f"epoll_wait() with that timeout returns 0 (TODO 6). It printed\n{quote(line)}"))
    stopped(vm, w)
    continued(vm, w)  # epoll_wait() fails with EINTR: wait again
    vm.button("press")
    signal_line(vm, w, BUTTON, "sigwatch -s -t 200, stopped and continued (epoll_wait() fails with EINTR: wait "
                "again), then the button was pressed")
    kinds = set(w.fds().values())
    calls = {syscall(vm, w.pid) for _ in range(3)}
    if "anon_inode:[signalfd]" not in kinds or "anon_inode:[eventpoll]" not in kinds:
        vm.fail(w.explain("sigwatch -s should take its signals from a signalfd (signalfd()) watched by an epoll "
                          f"instance (epoll_create1()): /proc/PID/fd shows {sorted(kinds)} (TODO 6)."))
    opened = list(w.fds().values())
    many = [(opened.count(k), k) for k in ("anon_inode:[signalfd]", "anon_inode:[eventpoll]") if opened.count(k) > 1]
    if many:
        vm.fail(w.explain(f"After a timeout, a stop and a press, sigwatch -s has {many[0][0]} {many[0][1]} "
                          "descriptors open: make the signalfd and the epoll instance once, before the loop, and "
                          "wait on them again and again. One made per wait and never closed leaks a descriptor "
                          "per signal, until signalfd() or epoll_create1() fails with EMFILE (TODO 6)."))
    if calls & {SYS_RT_SIGTIMEDWAIT} or not calls & {SYS_EPOLL_WAIT, SYS_EPOLL_PWAIT}:
        vm.fail(w.explain("sigwatch -s should wait in epoll_wait() (system call 232 on x86-64); /proc/PID/syscall "
                          f"shows {sorted(c for c in calls if c is not None)} (TODO 6)."))


def scripted(vm: VmLab, w: GuestProc) -> list[str]:
    """The same events for each version: held through a press, a note, a release, a click and a note; taken;
    then a press and a note one by one.  The lines from `taking` on, the counts last."""
    n = writer(vm, w)
    hold(w)
    vm.button("press")
    note(n)
    vm.button("release")
    vm.button("click")
    note(n)
    take(w)
    order = [BUTTON, "notes", BUTTON, BUTTON, BUTTON, "notes"]
    for i, src in enumerate(order, 1):
        signal_line(vm, w, src, f"held through a press, a note, a release, a click and a note; signal {i} of 6")
    vm.button("press")
    signal_line(vm, w, BUTTON, "then a press")
    note(n)
    signal_line(vm, w, "notes", "then a note")
    w.expect(r"^notes: note 3$", msg="The third note should be read.")
    signalfds = [fd for fd, target in w.fds().items() if "signalfd" in target]
    if len(signalfds) > 1:
        vm.fail(w.explain(f"After a hold and a take sigwatch has {len(signalfds)} signalfds open (fds "
                          f"{', '.join(map(str, signalfds))}): change the mask of the one in the epoll set with "
                          "signalfd(sfd, &mask, 0), the same descriptor, rather than making a new one."))
    lines = after(finish(vm, w), "taking")
    vm.button("release")  # as it was for the next run (no one watches)
    # The device numbers its events since it was loaded: seq from the run's first record on.
    first = next((s for s, _ in records(lines)), 1)
    return [re.sub(r"\bseq (\d+)", lambda m: f"seq +{int(m.group(1)) - first}", ln) for ln in lines]


@graded(task=4, points=8)
def test_with_s_the_event_stream_is_the_same_as_with_sigwaitinfo(vm: VmLab) -> None:
    got = {}
    for opts in ((), ("-s",)):
        w = watch(vm, *opts)
        got[opts] = scripted(vm, w)
    a, b = got[()], got[("-s",)]
    if a != b:
        diff = [f"sigwaitinfo: {x!r:48} signalfd: {y!r}" for x, y in zip(a, b) if x != y][:6]
        if len(a) != len(b):
            diff.append(f"({len(a)} lines against {len(b)})")
        vm.fail("sigwatch and sigwatch -s were given the same events (held through a press, a note, a release, a "
                "click and a note; then a press and a note): they should print the same lines, since the signals and "
                "their siginfo are the same, read from a signalfd (struct signalfd_siginfo: ssi_signo, ssi_code, "
                "ssi_fd, ssi_band) instead of returned by sigwaitinfo(). Where they differ:\n    "
                + "\n    ".join(diff))


@graded(task=4, points=6)
def test_with_s_an_overflow_is_recovered_with_nothing_lost(vm: VmLab) -> None:
    w, s0, lines = overflow(vm, "-s")
    check_flushed(vm, w, lines)
    check_nothing_lost(vm, w, s0, lines)


@graded(task=4, points=6)
def test_a_tkill_reads_si_user_from_sigwaitinfo_and_si_tkill_from_a_signalfd(vm: VmLab) -> None:
    # (options, sent with tgkill rather than kill, the si_code to print); the kill(2) with a signalfd
    # tells a program that prints what the wait returned from one that prints a fixed word per mode
    want = [((), True, "SI_USER"), (("-s",), True, "SI_TKILL"), (("-s",), False, "SI_USER")]
    for opts, tkill, code in want:
        w = watch(vm, *opts)
        how = "tgkill(2) (what raise() does)" if tkill else "kill(2)"
        if tkill:
            p = vm.spawn("rtprobe", "tkill", str(w.pid), str(SIGTERM), helper=True)
            p.expect(r"^sent$")
        else:
            w.signal("TERM")
        if w.wait_exit(timeout=10) != 0:
            vm.fail(w.explain(f"sigwatch {' '.join(opts)} was sent SIGTERM with {how}: it "
                              "should print its counts and exit 0."))
        lines = w.output().splitlines()
        m = TOTALS.match(lines[-1]) if lines else None
        if not m or m.group(2) != code:
            vm.fail(w.explain(
                f"sigwatch {' '.join(opts)} was sent SIGTERM with {how}, which the kernel reports with si_code "
                f"{'SI_TKILL' if tkill else 'SI_USER'}: its last line should say `sigwatch: SIGTERM ({code}): ...`. "
                "glibc's sigwaitinfo() rewrites SI_TKILL to SI_USER (measured with glibc 2.36); a signalfd gives "
                "the kernel's ssi_code as it is. Print the si_code the wait returned."))
