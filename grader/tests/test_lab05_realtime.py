"""Lab 5: F_SETSIG with realtime signals (rtwatch) and a hot-unpluggable driver, graded in the VM.

One boot for the whole lab, with slub_debug=FZP: freed memory holds a poison
(0x6b), so a driver that uses its state after freeing it crashes at once
instead of by chance.  The program tasks (1 to 3) run rtwatch against the
reference driver of lab 3 (grader/reference/03-fasync-button, loaded as
button_driver_ref: /dev/button, one POLL_IN per event) and a FIFO of notes
written by the grader's rtprobe, so a bug in the student's driver costs no
program points (and the edition of the workbook handed out with lab 5 has no
driver of lab 5 in it).  Tasks 4 and 5 load the student's driver and look at
it through rtprobe; the last test runs rtwatch on it.  The unplug tests come
last: a driver that frees its state under open files crashes the kernel.

Every count is forced by construction or checked against the kernel's record
(gradelib/witness.py): signals are held (blocked) through a burst, then
taken; realtime signals queue one per event, in order; with
RLIMIT_SIGPENDING lowered to LIMIT (runas -l sigpending=N) exactly LIMIT of
them queue and the rest fall back to one plain SIGIO.
"""
from __future__ import annotations

import re

import pytest

from gradelib import graded, kalloc
from gradelib.lab import Program
from gradelib.rtstream import (BAND_HUP, BAND_IN, BUTTON, FLUSHED, LIMIT, POLL_HUP, POLL_IN, RECORD, SIGNAL, after,
                                check_flushed, check_nothing_lost, expect_signal, fd_of, fifo, hold, kernel,
                                note, notes_read, records, take, writer)
from gradelib import rtstream
from gradelib.vmlab import GuestProc, VmLab, VmLabSpec, quote

LAB = VmLabSpec(
    5, "05-realtime-signals",
    programs={"rtwatch": Program(["rtwatch.c"], sanitize=False)},
    module="button_driver",
    helpers=("rtprobe",),
    harness=("asyncorder", "flushinject"),
    devices=("/dev/button", "/dev/switch1", "/dev/switch2", "/dev/switch3"),
    reference="03-fasync-button",
    signals=True,
    cmdline="slub_debug=FZP,kmalloc-*",
)

TOTALS = re.compile(r"^rtwatch: SIG(?:INT|TERM): (?P<rt>\d+) signals, (?P<io>\d+) overflows$")
COUNTS = "rtwatch: SIGTERM: N signals, M overflows"


# --- rtwatch, its notes, and what it printed -----------------------------------------------

def watch(vm: VmLab, *devices: str, driver: str = "reference", **kw) -> GuestProc:
    """rtwatch on the notes FIFO (in its own folder) and the devices (default /dev/button)."""
    vm.use_driver(driver)
    w = vm.spawn("rtwatch", "notes", *(devices or (BUTTON,)), **kw)
    w.expect("^ready", msg="rtwatch prints a line starting with `ready` once its sources are set up.")
    return w


def finish(vm: VmLab, w: GuestProc) -> list[str]:
    """SIGTERM: rtwatch prints its counts and exits 0.  Its output lines."""
    return rtstream.finish(vm, w, COUNTS)


def why_no_signal(vm: VmLab, w: GuestProc, path: str) -> str:
    """Why rtwatch printed no signal line for an event of `path`, from what the kernel shows."""
    rec = vm.witness.record([w.pid]) if vm.witness else None
    rt = rec.count(w.pid, "SIGRTMIN") if rec else None
    io = rec.count(w.pid, "SIGIO") if rec else None
    st = w.status()
    if st is not None:
        if io is not None and io.generated and st == 128 + 29:
            return ("rtwatch was killed by SIGIO: the kernel sent the plain SIGIO (" + io.line + "), so "
                    f"{path}'s file had no realtime signal chosen with F_SETSIG, and SIGIO has no handler (TODO 1).")
        if st == 128 + 11 and rt is not None and rt.taken:
            return ("rtwatch crashed (SIGSEGV) after its handler was given SIGRTMIN (" + rt.line + "). Check that "
                    "the handler was installed with SA_SIGINFO in sa_flags: without it the kernel does not fill in "
                    "the siginfo_t, and si_fd, si_code and si_band are garbage (TODO 1).")
        return "It ended before it printed one (What happened, below)."
    if io is not None and io.generated and (rt is None or not rt.generated):
        return ("The kernel sent plain SIGIO, not SIGRTMIN: choose the realtime signal with fcntl(fd, F_SETSIG, "
                "SIGRTMIN) for each source, before O_ASYNC (TODO 1).")
    if rt is not None and rt.taken:
        return ("The kernel queued SIGRTMIN and rtwatch took it, but main printed no `signal N:` line: the handler "
                "must record si_fd, si_code and si_band in the inbox (TODO 2) for main to dispatch.")
    if rt is not None and rt.generated:
        return "The kernel queued SIGRTMIN for rtwatch, but rtwatch never took it: is it blocked for good?"
    return f"The kernel sent rtwatch no signal for {path}'s event."


def signal_line(vm: VmLab, w: GuestProc, path: str, what: str, code: str = "POLL_IN",
                band: str = BAND_IN) -> re.Match[str]:
    return rtstream.signal_line(vm, w, path, what, why_no_signal, code, band)


def press_release(vm: VmLab, w: GuestProc) -> int:
    return rtstream.press_release(vm, w, why_no_signal)


# --- Task 1: one queued signal per event ------------------------------------------------------

@pytest.mark.prereq
def test_rtwatch_builds(vm_lab: VmLab) -> None:
    vm_lab.build.program("rtwatch")


@graded(task=1, points=5)
def test_a_press_is_one_sigrtmin_with_the_buttons_fd_poll_in_and_band_0x41(vm: VmLab) -> None:
    rtstream.one_press(vm, watch(vm), why_no_signal, unnamed_ok=True)


@graded(task=1, points=7)
def test_ten_events_while_held_are_ten_queued_signals_each_with_fd_code_and_band(vm: VmLab) -> None:
    w = watch(vm)
    lines = rtstream.ten_held(vm, w, why_no_signal, "Five clicks (ten events) happened while rtwatch held its signals",
                              COUNTS, unnamed_ok=True)
    m = TOTALS.match(lines[-1]) if lines else None
    if not m or m.groups() != ("10", "0"):
        vm.fail(w.explain("At SIGTERM rtwatch's last line should count the ten signals it handled: "
                          "`rtwatch: SIGTERM: 10 signals, 0 overflows`."))


@graded(task=1, points=3)
def test_f_setsig_the_handlers_and_the_owner_come_before_o_async(vm: VmLab) -> None:
    w = watch(vm, preload=("asyncorder",), env={"ASYNCORDER_SETSIG": "1"})
    finish(vm, w)
    found = re.findall(r"^asyncorder: (.+)$", w.output(), re.M)
    turned = [f for f in found if f == "O_ASYNC turned on"]
    wrong = sorted({f for f in found if f != "O_ASYNC turned on"})
    if len(turned) < 2:
        vm.fail(w.explain(f"rtwatch turned O_ASYNC on with fcntl(F_SETFL) for {len(turned)} of its 2 sources "
                          "(notes and /dev/button): without it a source sends nothing."))
    sigio = [f for f in wrong if f.startswith("F_SETSIG chose SIGIO")]
    if sigio:
        vm.fail(w.explain("rtwatch's fcntl(fd, F_SETSIG, ...) chose SIGIO, not a realtime signal: SIGIO does not "
                          "queue, so events merge and one may be lost. F_SETSIG SIGRTMIN for each source, before "
                          "O_ASYNC (TODO 1)."))
    if wrong:
        vm.fail(w.explain("When rtwatch turned O_ASYNC on, an event at that moment would have been lost or killed "
                          "it: " + "; ".join(wrong) + ". Install the handler (SA_SIGINFO) for SIGRTMIN and SIGIO, "
                          "then per source F_SETOWN and F_SETSIG, and only then O_ASYNC."))


@graded(task=1, points=5)
def test_rtwatch_s_handler_calls_only_async_signal_safe_functions_and_keeps_errno(vm: VmLab) -> None:
    w = watch(vm)
    n = writer(vm, w)
    for act in ("press", "release"):
        vm.button(act)
        signal_line(vm, w, BUTTON, f"The button was {act}ed" if act == "press" else "The button was released")
    note(n)
    signal_line(vm, w, "notes", "A note was written to the FIFO")
    finish(vm, w)
    unsafe, errno_changed = w.sigsafe(), w.sigsafe(errno_findings=True)
    if unsafe:
        vm.fail(w.explain("rtwatch's handler calls functions that are not async-signal-safe (signal-safety(7)): "
                          "it should only record si_fd, si_code and si_band for main:\n"
                          + "\n".join(f"    | {x}" for x in unsafe)))
    if errno_changed:
        vm.fail(w.explain("rtwatch's handler returns with errno changed, which main may be about to read: save "
                          "it on entry and restore it on return, or call nothing that sets it:\n"
                          + "\n".join(f"    | {x}" for x in errno_changed)))


# --- Task 2: one handler, many sources --------------------------------------------------------

@graded(task=2, points=4)
def test_a_note_is_read_after_a_signal_with_the_fifo_s_fd(vm: VmLab) -> None:
    w = watch(vm)
    fd = fd_of(vm, w, fifo(w))
    n = writer(vm, w)
    note(n)
    m = signal_line(vm, w, "notes", "A line was written to the notes FIFO")
    expect_signal(vm, w, m, 1, fd, "POLL_IN", BAND_IN, "notes", "A line was written to the notes FIFO")
    line = w.expect(r"^notes: ", fail=False)
    if line != "notes: note 1":
        vm.fail(w.explain(f"After the FIFO's signal rtwatch should read it until EAGAIN and print `notes: note 1` "
                          f"(dispatch POLL_IN to drain()); it printed\n{quote(line)}"))


@graded(task=2, points=6)
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
    order = [BUTTON, "notes", BUTTON, "notes"]
    what = "While rtwatch held its signals: a press, a note, a release, a note"
    for i, src in enumerate(order, 1):
        m = signal_line(vm, w, src, f"{what}; signal {i} of 4")
        expect_signal(vm, w, m, i, fds[src], "POLL_IN", BAND_IN, src, f"{what}; signal {i} of 4 (realtime signals "
                      "are delivered in the order they were queued)")
    lines = after(finish(vm, w), "taking")
    # Which signal (its number and fd) each line of data came after.
    k, where, seen = 0, None, []
    for ln in lines:
        m = SIGNAL.match(ln)
        if m:
            k, where = k + 1, int(m.group(2))
            continue
        src = BUTTON if RECORD.match(ln) and ln.startswith(BUTTON + ":") else "notes" if ln.startswith("notes: ") else ""
        if src:
            seen.append((src, ln, k, where))
    wrong = [f"{quote(ln)}\n      (after the signal of fd {fd})" for src, ln, _, fd in seen if fd != fds[src]]
    want = [("/dev/button", "pressed"), ("/dev/button", "released")]
    got = [(BUTTON, s) for _, s in records(lines)]
    if wrong or got != want or notes_read(lines) != ["note 1", "note 2"]:
        vm.fail(w.explain(f"{what}. The first signal of /dev/button (fd {fds[BUTTON]}) should read both its records, "
                          f"the first of notes (fd {fds['notes']}) both notes, each source only after a signal of "
                          "its own fd: dispatch on si_fd, read only that source."
                          + ("\n  Read after another source's signal:\n" + "\n".join(wrong) if wrong else "")))
    late = [f"{quote(ln)}\n      (after signal {n})" for src, ln, n, _ in seen if n != (1 if src == BUTTON else 2)]
    if late:
        vm.fail(w.explain(f"{what}. At a signal, read the source until EAGAIN: everything waiting then is read "
                          "before main handles the next signal (one signal may stand for several records, and the "
                          "next may find nothing). Signal 1 should read both of /dev/button's records and signal 2 "
                          "both notes; rtwatch read\n" + "\n".join(late)))


@graded(task=2, points=5)
def test_the_writer_closing_the_fifo_is_its_end_of_file_and_rtwatch_goes_on(vm: VmLab) -> None:
    w = watch(vm)
    fd = fd_of(vm, w, fifo(w))
    n = writer(vm, w)
    note(n)
    w.expect(r"^notes: note 1$", msg="A note was written to the FIFO.")
    n.signal("USR2")
    n.expect(r"^closed$")
    m = signal_line(vm, w, "notes", "The FIFO's only writer closed it")
    expect_signal(vm, w, m, 2, fd, "POLL_IN", BAND_IN, "notes", "The FIFO's only writer closed it (a pipe "
                  "reports that as POLL_IN: there is something to read, the end of file)")
    line = w.expect(r"^notes: ", fail=False)
    if line != "notes: end of file":
        vm.fail(w.explain(f"The writer closed the FIFO: read(2) returns 0, and rtwatch should say `notes: end of "
                          f"file`; it printed\n{quote(line)}"))
    note(n)  # a new writer opens it again
    line = w.expect(r"^notes: ", fail=False)
    vm.button("press")
    rec = w.expect(r"^/dev/button: ", fail=False)
    if line != "notes: note 2" or not rec.endswith("pressed"):
        vm.fail(w.explain("After the end of file rtwatch should go on: keep the FIFO open (a new writer may come: "
                          "its note 2 must be read) and keep watching /dev/button (a press must be read)."))


# --- Task 3: when the queue is full ------------------------------------------------------------

def overflow(vm: VmLab, **kw) -> tuple[GuestProc, int, list[str]]:
    """rtwatch with RLIMIT_SIGPENDING = LIMIT through rtstream.overflow(): rtwatch, the seq before the burst,
    and the lines from `taking` to `resynchronised`."""
    w = watch(vm, sigpending=LIMIT, **kw)
    s0, lines = rtstream.overflow(vm, w, why_no_signal, "Handle SIGIO (the same handler), and treat it as: "
                                  "resynchronise.", "TODO 4; the flush takes only what is already queued: "
                                  "sigtimedwait() with a zero timeout, never NULL")
    return w, s0, lines


@graded(task=3, points=5)
def test_a_full_queue_s_sigio_does_not_kill_rtwatch_and_starts_a_resync(vm: VmLab) -> None:
    w, _, lines = overflow(vm)
    rt = kernel(vm, w, "SIGRTMIN")
    io = kernel(vm, w, "SIGIO")
    if not rt.queue_full or io.taken != 1:
        vm.fail(w.explain(f"With RLIMIT_SIGPENDING {LIMIT} and 103 events held, the queue should fill and one "
                          f"SIGIO be taken ({rt.line}; {io.line})."))
    if not any(FLUSHED.match(ln) for ln in lines):
        vm.fail(w.explain("After the SIGIO rtwatch should say `SIGIO: the signal queue overflowed; flushed N queued "
                          "signals` before it reads the sources."))
    if w.status() is not None:
        vm.fail(w.explain("rtwatch should go on running after a resynchronisation."))


@graded(task=3, points=5)
def test_the_resync_flushes_exactly_the_signals_left_in_the_queue(vm: VmLab) -> None:
    w, _, lines = overflow(vm)
    first = next((i for i, ln in enumerate(lines) if FLUSHED.match(ln)), None)
    early = [ln for ln in lines[:first] if SIGNAL.match(ln)] if first is not None else []
    if early and FLUSHED.match(lines[first]).group(1) == "0":  # type: ignore[index, union-attr]
        vm.fail(w.explain(f"When rtwatch took its signals, the queue held {LIMIT} SIGRTMIN and a SIGIO; rtwatch "
                          f"printed {len(early)} `signal` lines, then flushed 0: its handlers ran one inside "
                          "another, all on the same return from sigsuspend(), and took the stale signals before "
                          "main could flush them. Each handler's sa_mask must block SIGRTMIN and SIGIO (the other "
                          "handled signals), so that one handler runs per sigsuspend() (TODO 1)."))
    check_flushed(vm, w, lines)


@graded(task=3, points=7)
def test_after_an_overflow_every_event_is_read_or_named_lost_and_every_note_read(vm: VmLab) -> None:
    w, s0, lines = overflow(vm)
    check_nothing_lost(vm, w, s0, lines)


@graded(task=3, points=4)
def test_an_event_during_the_flush_is_read_by_the_same_resync(vm: VmLab) -> None:
    # flushinject writes `note injected` to the FIFO during the flush (grader/harness/flushinject.c);
    # rtwatch runs in its own folder, where its FIFO is `notes`.
    w, _, lines = overflow(vm, **rtstream.FLUSHINJECT)
    rtstream.check_flush_injected(vm, w, lines)


@graded(task=3, points=2)
def test_the_counts_at_exit_are_the_kernel_s(vm: VmLab) -> None:
    w, _, _ = overflow(vm)
    vm.button("burst 200 0", timeout=60)  # not held: the queue fills and empties as it goes
    rtstream.check_counts_at_exit(vm, w, finish(vm, w), TOTALS, COUNTS, "handled")


@graded(task=3, points=2)
def test_a_fifo_whose_writer_closed_during_an_overflow_is_read_to_its_end_by_the_resync(vm: VmLab) -> None:
    # A FIFO whose last writer has gone, and which is empty, polls POLLHUP without POLLIN (pipe_poll()).
    w = watch(vm, sigpending=LIMIT)
    n = writer(vm, w)
    hold(w)
    vm.button("burst 50 0")
    n.signal("USR2")
    n.expect(r"^closed$")
    take(w)
    what = (f"With RLIMIT_SIGPENDING {LIMIT}, while rtwatch held its signals, 100 events filled the queue and then the "
            "FIFO's only writer closed it without writing (its signal fell back to SIGIO)")
    if not w.expect(r"^resynchronised$", fail=False, timeout=10):
        vm.fail(w.explain(f"{what}: at the SIGIO rtwatch should resynchronise and say `resynchronised`."))
    lines = after(w.output().splitlines(), "taking")
    if "notes: end of file" not in lines:
        vm.fail(w.explain(f"{what}. poll(2) reports that FIFO as POLLHUP, without POLLIN (nothing to read but the "
                          "end): the resync must drain() every source that reports anything, not only POLLIN, and "
                          "print `notes: end of file`."))


# --- Task 4: one driver, four devices (the student's driver) -------------------------------------

@pytest.mark.prereq
def test_the_module_builds_with_no_warnings(vm_lab: VmLab) -> None:
    vm_lab.check_module_build()


NODES = [BUTTON, "/dev/switch1", "/dev/switch2", "/dev/switch3"]


def rtprobe(vm: VmLab, *paths: str) -> tuple[GuestProc, dict[str, int]]:
    """The grader's watcher: each path with F_SETSIG SIGRTMIN; its fds by path."""
    p = vm.spawn("rtprobe", "watch", *paths, helper=True)
    line = p.expect(r"^(ready|open-error.*|fcntl-error.*)$")
    if line != "ready":
        vm.fail(p.explain(f"The grader's watcher could not set up {', '.join(paths)}: `{line}`."))
    return p, {path: int(fd) for fd, path in re.findall(r"^fd (\d+) (\S+)$", p.output(), re.M)}


def check(p: GuestProc) -> dict[str, str]:
    """Tell the watcher to read and poll every file: {"peek PATH": revents before reading, "read PATH": result,
    "poll PATH": revents after}."""
    p.signal("USR1")
    p.expect(r"^checked$", msg="The grader's watcher read and polled its files.")
    text = p.output().rsplit("checked", 2)[-2]
    return {f"{k} {path}": v.strip() for k, path, v in re.findall(r"^(read|poll|peek) (\S+) (.*)$", text, re.M)}


def gots(p: GuestProc) -> list[tuple[int, int, str]]:
    return [(int(a), int(b), c) for a, b, c in re.findall(r"^got fd (\d+) code (\d+) band (\S+)$", p.output(), re.M)]


def got_lines(signals: list[tuple[int, int, str]]) -> str:
    """Signals as the watcher printed them: `got fd 3 code 1 band 0x41`, ...; `none`."""
    return ", ".join(f"`got fd {fd} code {code} band {band}`" for fd, code, band in signals) or "none"


def not_returned(p: GuestProc, call: str) -> str:
    """Why a process blocked in `call` (read or poll) did not return after the unplug, from its state."""
    st = p.state()
    if st and st.state == "R":
        return (f"it was woken but {call}() did not return: it loops (running, not asleep), so check gone after "
                "waking, and return")
    if st and st.state in ("S", "D"):
        return f"it still sleeps in {st.syscall or call}()"
    return f"{call}() did not return"


@graded(task=4, points=4)
def test_the_driver_makes_a_node_for_the_button_and_each_switch_and_rmmod_removes_them(vm: VmLab) -> None:
    vm.use_driver("student")
    missing = [n for n in NODES if not vm.run(f"test -c {n}").ok]
    if missing:
        vm.fail(f"With your driver loaded, {', '.join(missing)} should exist: one misc device per bound device, "
                "named after it (the board's wb-button and wb-switch.1 to .3; TODO 5: the platform_device_id table, "
                "and the name from pdev->id).")
    r = vm.run("rmmod button_driver", timeout=20, what="rmmod button_driver")
    left = [n for n in NODES if vm.run(f"test -e {n}").ok]
    irqs = vm.run("grep -c ' button_driver$' /proc/interrupts").stdout.strip()
    vm.use_driver("student")
    if not r.ok or left or irqs not in ("", "0"):
        # Nodes left after an rmmod that succeeded: the miscdevices were never deregistered, and their
        # nodes now point into freed memory (an open of one oopses in misc_open()).
        why = (" remove() must misc_deregister() each device's node (a misc device is not a devm resource)."
               if r.ok and left else "")
        vm.fail(f"`rmmod button_driver` should remove the four devices and free their IRQs: "
                f"{(r.stderr or r.stdout).strip() or 'it succeeded'}; left: {', '.join(left) or 'no node'}, "
                f"{irqs or 0} IRQ(s) still in /proc/interrupts.{why}")


@graded(task=4, points=4)
def test_a_switch_s_events_are_read_from_its_own_node_numbered_from_1(vm: VmLab) -> None:
    vm.use_driver("student")
    p, _ = rtprobe(vm, BUTTON, "/dev/switch2")
    vm.button("press")  # the button first: a switch's seq must not go on from the button's
    vm.button("release")
    vm.button("press 2")
    vm.button("release 2")
    got = check(p)
    if got.get("read /dev/switch2") != "2: 1 1, 2 0" or got.get("read /dev/button") != "2: 1 1, 2 0":
        vm.fail(p.explain(f"The button was pressed and released, then switch 2: /dev/switch2 should give two records, "
                          f"seq 1 pressed and seq 2 released, and /dev/button its own two, also seq 1 and 2 (each "
                          f"device counts its own events, in its own struct). The grader read "
                          f"`{got.get('read /dev/switch2')}` from /dev/switch2 and `{got.get('read /dev/button')}` "
                          f"from /dev/button (records: seq pressed)."))


@graded(task=4, points=4)
def test_a_switch_signals_only_its_own_files_with_poll_in(vm: VmLab) -> None:
    vm.use_driver("student")
    p, fds = rtprobe(vm, BUTTON, "/dev/switch1")
    vm.button("press 1")
    p.expect(r"^got ", msg="Switch 1 was pressed while the grader's watcher had /dev/switch1 registered.")
    vm.button("press")
    p.expect(r"^got ", msg="The button was pressed while the grader's watcher had /dev/button registered.")
    check(p)
    want = [(fds["/dev/switch1"], POLL_IN, BAND_IN), (fds[BUTTON], POLL_IN, BAND_IN)]
    if gots(p) != want:
        vm.fail(p.explain(f"A press of switch 1, then of the button: the watcher (F_SETSIG SIGRTMIN on both) should "
                          f"get one signal each, from its own file: {got_lines(want)}; it got "
                          f"{got_lines(gots(p))}. Each device has its own fasync list; kill_fasync(..., POLL_IN) per "
                          "event."))


@graded(task=4, points=3)
def test_a_switch_s_ring_overwrites_with_no_signal_of_its_own(vm: VmLab) -> None:
    vm.use_driver("student")
    sw = "/dev/switch3"
    p, _ = rtprobe(vm, sw, sw)  # two open files, each registered: two readers, two fasync entries
    vm.button("burst 35 0 3")  # 70 events of switch 3 into a ring of 64 that nobody reads: 6 overwritten
    rt = kernel(vm, p, "SIGRTMIN")
    if rt.generated != 140:
        vm.fail(p.explain(f"`button burst 35 0 3` made 70 events of switch 3 while the grader's watcher (F_SETSIG "
                          f"SIGRTMIN on two files open on {sw}) read nothing: one kill_fasync() per event signals "
                          f"each registered file once, so 140 signals, however full the ring (an overwrite sends "
                          f"nothing more), and however many readers the event is copied to (call it once per "
                          f"event, not once per reader); {rt.line}."))
    got = check(p).get(f"read {sw}", "")
    want = "64: " + ", ".join(f"{q} {q % 2}" for q in range(7, 71))
    if got != want:
        vm.fail(p.explain(f"70 events of switch 3 into a ring of 64 records: the grader should read the newest 64 "
                          f"from {sw}, seq 7 to 70 (the oldest six overwritten); it read `{got}`."))


# --- Task 5: hot-unplug (the student's driver; last in the boot) ----------------------------------

def close_unsafe(vm: VmLab) -> bool:
    """Whether closing a file after an unplug crashed this driver (the first test of task 5 finds out)."""
    return getattr(vm, "lab5_close_unsafe", False)


def unplugged_done(vm: VmLab, failed: bool) -> None:
    """After a test that unplugged the button with files open: plug it back, or, when closing those files
    may crash the kernel, leave this VM with them open and give the next test a fresh one."""
    if failed or close_unsafe(vm):
        vm.fresh_vm_next("a test left files open on an unplugged device")
    else:
        vm.run("button plug 0 2>/dev/null; true", what="`button plug`")


def unplug(vm: VmLab) -> None:
    vm.sh("button unplug", what="`button unplug` (your driver's remove() runs with files open)")


def failing(vm: VmLab, msg: str) -> None:
    unplugged_done(vm, True)
    vm.fail(msg)


def hangs_up(vm: VmLab, w: GuestProc) -> None:
    """rtwatch says `/dev/button: hangup` at the unplug's POLL_HUP."""
    line = w.expect(r"^/dev/button: ", fail=False)
    if line != "/dev/button: hangup":
        failing(vm, w.explain(f"At POLL_HUP rtwatch should say `/dev/button: hangup` and close the file (TODO 3); it "
                              f"printed\n{quote(line)}"))


def goes_on(vm: VmLab, w: GuestProc, n: GuestProc, after: str) -> None:
    """After `after`, rtwatch still reads its notes: the first note written is read."""
    note(n)
    got = w.expect(r"^notes: ", fail=False)
    if got != "notes: note 1":
        failing(vm, w.explain(f"After {after} rtwatch should go on with its other sources: a note written then "
                              f"should print `notes: note 1`; it printed\n{quote(got)}"))


@graded(task=5, points=3)
def test_closing_files_after_an_unplug_is_safe_and_then_rmmod_works(vm: VmLab) -> None:
    vm.use_driver("student")
    p, _ = rtprobe(vm, BUTTON)
    vm.button("press")
    unplug(vm)
    vm.lab5_close_unsafe = True  # type: ignore[attr-defined]  (until the close is seen to return)
    p.signal("USR2")  # close both files: an Oops fails the test here, naming where
    p.expect(r"^closed$", msg="The grader's watcher closed its file of /dev/button (unplugged).")
    vm.lab5_close_unsafe = False  # type: ignore[attr-defined]
    r = vm.run("rmmod button_driver", timeout=20, what="rmmod button_driver")
    vm.run("button plug 0 2>/dev/null; true", what="`button plug`")
    if not r.ok:
        vm.fail(f"After the unplug, once every file was closed, `rmmod button_driver` failed: "
                f"{(r.stderr or r.stdout).strip()}.")


@graded(task=5, points=2)
def test_the_last_close_after_an_unplug_frees_what_the_driver_allocated(vm: VmLab) -> None:
    vm.use_driver("student")
    if close_unsafe(vm):
        vm.fail("This cannot be checked: closing a file after an unplug crashed the kernel with your driver "
                "(test_closing_files_after_an_unplug_is_safe_and_then_rmmod_works says where).")
    unseen = kalloc.cannot_follow(vm.imports)
    if unseen:
        vm.fail(unseen)
    m = re.search(r"^button_driver (\d+) .* (0x[0-9a-f]+)", vm.run("cat /proc/modules").stdout, re.M)
    if not m:
        vm.fail("button_driver is not loaded, so its allocations cannot be watched.")
    lo = int(m.group(2), 16)
    vm.run(kalloc.start_script(lo, lo + int(m.group(1))), timeout=30, what="starting the kmem trace")
    vm.sh("button unplug; button plug", what="`button unplug` and `button plug` (probe() runs again, watched)")
    p, _ = rtprobe(vm, BUTTON)
    vm.button("press")
    unplug(vm)
    p.signal("USR2")  # close: the last reference goes, and with it the device's state
    p.expect(r"^closed$", msg="The grader's watcher closed its file of /dev/button (unplugged).")
    left, seen, complete = kalloc.leaked(vm.run(kalloc.read_script(), timeout=60, what="reading the kmem trace").stdout)
    vm.run("button plug 0 2>/dev/null; true", what="`button plug`")
    if not complete:
        vm.fail("The kernel's kmem trace overran its buffer during the scene (`button plug`, an open, a press, "
                "`button unplug`, the close), so it cannot tell whether the last close freed what the driver "
                "allocated: does the driver allocate in a loop?")
    if left:
        vm.fail(f"`button plug` (probe), an open of /dev/button, a press, `button unplug`, the close: everything your "
                f"driver allocated then ({seen} kmalloc/kzalloc/kmem_cache_alloc) should be freed by the last close; the kernel's "
                f"kmem trace shows {len(left)} never freed, allocated at: {', '.join(left)}. Does release() drop "
                "the file's reference (kref_put), and the last put free the state (kfree)?")


@graded(task=5, points=3)
def test_an_unplug_sends_poll_hup_with_band_0x18_to_a_registered_file(vm: VmLab) -> None:
    vm.use_driver("student")
    p, fds = rtprobe(vm, BUTTON)
    unplug(vm)
    p.expect(r"^got ", fail=False, timeout=5)  # waits for the signal, if one comes
    want = (fds[BUTTON], POLL_HUP, BAND_HUP)
    if gots(p) != [want]:
        failing(vm, p.explain(f"`button unplug` took /dev/button away while the grader's watcher had it registered "
                              f"(F_SETSIG SIGRTMIN): it should get exactly one signal, {got_lines([want])} (si_code "
                              f"{POLL_HUP} is POLL_HUP): kill_fasync(&queue, SIGIO, POLL_HUP) in remove(). It got "
                              f"{got_lines(gots(p))}."))
    unplugged_done(vm, False)


@graded(task=5, points=3)
def test_after_an_unplug_read_fails_with_enodev_and_wakes_a_blocked_reader(vm: VmLab) -> None:
    vm.use_driver("student")
    p, _ = rtprobe(vm, BUTTON)
    vm.button("press")  # a record in the ring: read fails all the same, as evdev's does
    r = vm.spawn("rtprobe", "read", BUTTON, helper=True)
    r.expect(r"^waiting$")
    vm.run(f"p={r.pid}; i=0; while [ $i -lt 300 ]; do set -- $(cat /proc/$p/syscall); [ \"$1\" = 0 ] && exit 0; "
           f"usleep 10000; i=$((i+1)); done", what="waiting for the reader to sleep in read")
    unplug(vm)
    line = r.expect(r"^read ", fail=False, timeout=5)  # asleep after the unplug: never woken
    if line != "read -1 ENODEV":
        failing(vm, r.explain(f"A reader was asleep in read(2) on /dev/button when it was unplugged: remove() must "
                              f"wake it and read() return -ENODEV; "
                              f"{'it returned `' + line + '`' if line else not_returned(r, 'read')}."))
    got = check(p).get(f"read {BUTTON}", "")
    if got != "-1 ENODEV":
        failing(vm, p.explain(f"After the unplug, the first read(2) of a file still open on /dev/button should fail "
                              f"with ENODEV, even with a record left in its ring (as evdev does: a device that is gone "
                              f"has nothing more to give); the grader read `{got}`"
                              + (" (the records left first, then ENODEV: check gone before the ring)"
                                 if " then " in got else "") + "."))
    unplugged_done(vm, False)


@graded(task=5, points=3)
def test_after_an_unplug_poll_reports_pollhup_and_pollerr_and_wakes_a_poller(vm: VmLab) -> None:
    vm.use_driver("student")
    r = vm.spawn("rtprobe", "poll", BUTTON, helper=True)
    r.expect(r"^waiting$")
    vm.run(f"p={r.pid}; i=0; while [ $i -lt 300 ]; do set -- $(cat /proc/$p/syscall); [ \"$1\" = 7 ] && exit 0; "
           f"usleep 10000; i=$((i+1)); done", what="waiting for the poller to sleep in poll")
    unplug(vm)
    line = r.expect(r"^poll ", fail=False, timeout=5)  # asleep after the unplug: never woken
    if line != "poll 1 0x18":
        failing(vm, r.explain(f"A process was asleep in poll(2) on /dev/button when it was unplugged: it must be "
                              f"woken, and poll report EPOLLHUP | EPOLLERR (revents 0x18); "
                              f"{'it gave `' + line + '`' if line else not_returned(r, 'poll')}."))
    unplugged_done(vm, False)


@graded(task=5, points=2)
def test_after_an_unplug_poll_reports_pollhup_and_pollerr_even_with_a_record_left(vm: VmLab) -> None:
    vm.use_driver("student")
    p, _ = rtprobe(vm, BUTTON)
    vm.button("press")  # a record in the ring, unread
    unplug(vm)
    got = check(p).get(f"peek {BUTTON}", "")
    rev = int(got, 16) if re.fullmatch(r"0x[0-9a-f]+|0", got) else -1
    if rev < 0 or rev & 0x18 != 0x18 or rev & ~0x59:
        failing(vm, p.explain(f"A press, then an unplug: a poll(2) of a file still open on /dev/button, before reading "
                              f"the record left in its ring, should report EPOLLHUP | EPOLLERR (0x18; EPOLLIN | "
                              f"EPOLLRDNORM, 0x41, may come with them, as evdev's does): check gone first. It "
                              f"reported `{got}`."))
    unplugged_done(vm, False)


@graded(task=5, points=2)
def test_plug_brings_the_device_back_and_old_files_stay_gone(vm: VmLab) -> None:
    vm.use_driver("student")
    old, _ = rtprobe(vm, BUTTON)
    vm.button("click")  # the old device's seq 1 and 2: the new device must count from 1 again
    unplug(vm)
    vm.sh("button plug", what="`button plug` (your driver's probe() runs again)")
    if not vm.run(f"test -c {BUTTON}").ok:
        failing(vm, "After `button plug` the driver's probe() should make /dev/button again.")
    new, _ = rtprobe(vm, BUTTON)
    vm.button("press")
    got_new, got_old = check(new).get(f"read {BUTTON}"), check(old).get(f"read {BUTTON}")
    if got_new != "1: 1 1":
        failing(vm, new.explain(f"A click, an unplug, a plug, a press: a file opened on the new /dev/button should "
                                f"read the press as seq 1 (a new device counts from 1, in its own struct); it "
                                f"read `{got_new}` (records: seq pressed)."))
    if got_old != "-1 ENODEV":
        failing(vm, old.explain(f"After an unplug and a plug, a file opened before the unplug still belongs to the "
                                f"old device: its read(2) fails with ENODEV, it never sees the new device's press; "
                                f"it read `{got_old}`."))
    if close_unsafe(vm):
        vm.fresh_vm_next("a test left files open on an unplugged device")


@graded(task=5, points=3)
def test_rtwatch_reports_an_unplugged_device_as_a_hangup_and_goes_on(vm: VmLab) -> None:
    w = watch(vm, driver="student")
    fd = fd_of(vm, w, BUTTON)
    n = writer(vm, w)
    unplug(vm)
    m = signal_line(vm, w, BUTTON, "/dev/button was unplugged while rtwatch watched it", "POLL_HUP", BAND_HUP)
    expect_signal(vm, w, m, 1, fd, "POLL_HUP", BAND_HUP, BUTTON, "/dev/button was unplugged while rtwatch "
                  "watched it (your driver's POLL_HUP, tested alone above, reaching rtwatch)")
    hangs_up(vm, w)
    goes_on(vm, w, n, "the hangup of /dev/button")
    if fd in w.fds():
        failing(vm, w.explain("After the hangup rtwatch should close /dev/button: its open file keeps the driver's "
                              "state alive."))
    unplugged_done(vm, False)


@graded(task=5, points=2)
def test_a_signal_for_a_file_a_hangup_closed_is_only_reported(vm: VmLab) -> None:
    w = watch(vm, driver="student")
    n = writer(vm, w)
    hold(w)
    vm.button("press")  # a POLL_IN queued, then the unplug's POLL_HUP behind it, for the same fd
    unplug(vm)
    take(w)
    line = w.expect(r"^signal [0-9]+: .*POLL_HUP", fail=False)
    if not line.endswith("(not watched)"):
        failing(vm, w.explain(
            "rtwatch held its signals through a press and an unplug of /dev/button, then took them: the press's "
            "POLL_IN comes first, its read fails with ENODEV and rtwatch hangs up (closes the file); the "
            "unplug's POLL_HUP then names an fd it no longer watches, and should be reported as `signal N: fd F "
            "POLL_HUP band 0x18 (not watched)` and nothing more (sourceByFd() returns NULL: check it). "
            f"It printed\n{quote(line)}"))
    goes_on(vm, w, n, "a signal for a closed file")
    unplugged_done(vm, False)


@graded(task=5, points=2)
def test_after_a_hangup_an_overflow_is_resynchronised_over_the_sources_left(vm: VmLab) -> None:
    sw = "/dev/switch1"
    w = watch(vm, BUTTON, sw, driver="student", sigpending=LIMIT)
    n = writer(vm, w)
    unplug(vm)
    hangs_up(vm, w)
    hold(w)
    vm.button("burst 10 0 1")  # 20 events of switch 1 and two notes: more signals than the queue's 8
    note(n)
    note(n)
    take(w)
    done = w.expect(r"^resynchronised$", fail=False, timeout=10)
    lines = w.output().splitlines()
    got = records(after(lines, "taking"), sw)
    if not done or [q for q, _ in got] != list(range(1, 21)) or notes_read(after(lines, "taking")) != ["note 1",
                                                                                                       "note 2"]:
        failing(vm, w.explain(
            "After /dev/button hung up, rtwatch held its signals through 20 events of switch 1 and two notes, more "
            "than its queue of 8: its resync should poll the sources still open, /dev/switch1 and the notes, and "
            f"read each that reports anything: switch 1's seq 1 to 20 and both notes. It read "
            f"{[q for q, _ in got] or 'no record'} of switch 1 and notes {notes_read(after(lines, 'taking'))}"
            + ("" if done else ", and said no `resynchronised`") + ". After a hangup the closed source must be "
            "left out of the poll (not polled as a closed fd), and each entry of the poll array must lead back to "
            "its own source (TODO 4)."))
    unplugged_done(vm, False)
