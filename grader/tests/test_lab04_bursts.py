"""Lab 4: SIGIO under bursts (burstwatch) and a debounced driver, graded in the VM.

One boot for the whole lab.  The program tasks (1 to 3) run burstwatch
against the reference driver of lab 3 (grader/reference/03-fasync-button,
loaded as button_driver_ref), so a student whose own driver is broken can
still do them; task 4 (debounce) loads the student's driver.  The program
tests come first: an Oops in the student's driver ends the lab's tests.

Every count is either forced by construction or checked against the
kernel's own record (gradelib/witness.py): SIGIO is held (blocked) through
a burst and taken once; the seq numbers the driver gives are the
interrupts since it was loaded (/proc/interrupts); the deliveries a program
counts must be the SIGIO the kernel says it took.  Debounce tests wait for
the driver's timer with a sleep in the guest five windows long, which the
kernel's timer order makes deterministic: a timer due earlier fires first.
"""
from __future__ import annotations

import re
import signal
from weakref import WeakKeyDictionary

import pytest

from gradelib import graded
from gradelib.lab import Program
from gradelib.rtstream import after
from gradelib.vmlab import REFERENCES, GuestProc, VmLab, VmLabSpec
from gradelib.witness import SignalCount
from vm.machine import CmdResult

LAB = VmLabSpec(
    4, "04-sigio-bursts",
    programs={"burstwatch": Program(["burstwatch.c"], sanitize=False)},
    module="button_driver",
    helpers=("reader",),
    devices=("/dev/button",),
    reference="03-fasync-button",
    signals=True,
)

DELIVERY = re.compile(r"^SIGIO (\d+): read (\d+)(?:, seq (\d+) to (\d+))?$")
LOST = re.compile(r"^lost (\d+): seq (\d+) to (\d+)$")
AT_EXIT = re.compile(r"^at exit: read (\d+)(?:, seq (\d+) to (\d+))?$")
TOTAL = re.compile(r"^(\d+) events in (\d+) SIGIO deliveries: (\d+) read, (\d+) lost$")
REC = re.compile(r"^rec (\d+) (\d) (\d+)$", re.M)
WINDOW_MS = 20  # the debounce window of the driver tests


def ring_size() -> int:
    """BUTTON_RING_SIZE of the reference driver."""
    header = REFERENCES / LAB.reference / "button_event.h"
    if not header.is_file():
        return 0  # no reference driver: the VM's setup says so, and every test of lab 4 fails with that
    text = header.read_text()
    return int(re.search(r"#\s*define\s+BUTTON_RING_SIZE\s+(\d+)", text).group(1))


RING = ring_size()


# --- the program tasks: burstwatch on the reference driver ----------------------------

# A cause found in one test that every later test of burstwatch would meet again, after a wait of its
# own: they fail at once with it (one VM, one build of burstwatch per grading).
KNOWN_CAUSE: WeakKeyDictionary[VmLab, str] = WeakKeyDictionary()


def watch(vm: VmLab) -> GuestProc:
    if vm in KNOWN_CAUSE:
        vm.fail(KNOWN_CAUSE[vm])
    vm.use_driver("reference")
    w = vm.spawn("burstwatch")
    w.expect("^ready", msg="burstwatch prints a line starting with `ready` once F_SETOWN and O_ASYNC are set.")
    return w


def held_in_stdio(vm: VmLab, w: GuestProc) -> str:
    """Why burstwatch's SIGIO lines do not come out, when they wait in stdio's buffer; "" otherwise."""
    return w.held_in_stdio("SIGIO", r"^SIGIO ", "SIGIO N:", "Make each line with write(2), as the lineStart()/"
                           "putStr()/lineEnd() helpers do.")


def said(vm: VmLab, w: GuestProc, pattern: str, msg: str = "") -> str:
    """w.expect(), and when nothing came because the lines wait in stdio's buffer, that cause first."""
    try:
        return w.expect(pattern, msg=msg)
    except pytest.fail.Exception as e:
        cause = held_in_stdio(vm, w)
        if not cause:
            raise
        head, _, rest = cause.partition("\n")
        KNOWN_CAUSE[vm] = (f"{head}\n  Found in {vm.test_name}, whose message has the details; this test did not "
                           "run burstwatch, whose lines would wait in the same buffer.")
        # e.msg has the harness's message and the kernel's record already
        pytest.fail(f"{cause}\n  The other tests of burstwatch fail with this cause at once, without waiting "
                    f"for its output.\n{e.msg}", pytrace=False)


def seq_now(vm: VmLab) -> int:
    """The seq of the reference driver's last event: one event per interrupt since it was loaded."""
    return vm.irqs_since_load()


def hold(vm: VmLab, w: GuestProc) -> None:
    w.signal("USR1")
    w.expect(r"^holding SIGIO$", msg="At SIGUSR1 burstwatch blocks SIGIO and says `holding SIGIO`.")


def take(vm: VmLab, w: GuestProc) -> None:
    w.signal("USR1")
    w.expect(r"^taking SIGIO$", msg="At the next SIGUSR1 burstwatch unblocks SIGIO and says `taking SIGIO`.")
    lines = w.output().splitlines()
    held = after(lines, "holding SIGIO")
    during = [ln for ln in held[:held.index("taking SIGIO")] if DELIVERY.match(ln)]
    if during:
        vm.fail(w.explain(f"burstwatch said `holding SIGIO`, yet it took {len(during)} SIGIO before `taking SIGIO`: "
                          "while holding, SIGIO must stay blocked, so that the events' signals merge into one pending "
                          "SIGIO: in main's own mask from the start (every signal burstwatch handles stays blocked "
                          "outside sigsuspend()), and in heldMask, the mask it waits with in sigsuspend()."))


def finish(vm: VmLab, w: GuestProc) -> list[str]:
    """SIGTERM; burstwatch reads what is left, prints its totals and exits 0.  Its output lines."""
    w.signal("TERM")
    st = w.wait_exit(timeout=10)
    now = w.state() if st is None else None
    if now is not None and now.syscall == "read":
        vm.fail(w.explain("burstwatch did not exit after SIGTERM: it is asleep in read(2) on /dev/button. A drain "
                          "reads until read() fails with EAGAIN, which it does only on a file opened with "
                          "O_NONBLOCK; without it the drain's last read() waits for the next event, in the "
                          "handler or at exit."))
    if st != 0:
        vm.fail(w.explain("burstwatch did not exit with status 0 after SIGTERM: it should read what is left, print "
                          "its totals and exit with status 0."))
    return w.output().splitlines()


def totals(vm: VmLab, w: GuestProc, lines: list[str]) -> tuple[int, int, int, int]:
    """(events, deliveries, read, lost) from the last line."""
    m = TOTAL.match(lines[-1]) if lines else None
    if not m:
        vm.fail(w.explain("burstwatch's last line is not its totals: "
                          "`N events in M SIGIO deliveries: R read, L lost`."))
    return tuple(int(x) for x in m.groups())  # type: ignore[return-value]


def kernel_sigio(vm: VmLab, w: GuestProc) -> SignalCount:
    rec = vm.witness.record([w.pid]) if vm.witness else None
    if rec is None:
        vm.fail(f"The kernel's record of the signals is missing (a grader problem, not your code): "
                f"{vm.witness.error if vm.witness else 'no witness'}")
    return rec.count(w.pid, "SIGIO")


def account_trouble(lines: list[str]) -> str:
    """What burstwatch's own lines show of a wrong account() (Task 3), "" if nothing: a `lost N: seq A to B`
    whose N is not the size of its range, a `lost` line for seqs before the first record it ever read (that
    record is the baseline: what came before it, it cannot know), or totals whose lost count is not the sum
    of its `lost` lines."""
    first = None  # the first seq ever read: the start of the first range with records in it
    for ln in lines:
        m = DELIVERY.match(ln) or AT_EXIT.match(ln)
        if m and m.group(m.re.groups - 1):
            first = int(m.group(m.re.groups - 1))
            break
    named = 0
    for ln in lines:
        m = LOST.match(ln)
        if not m:
            continue
        n, a, b = map(int, m.groups())
        if n != b - a + 1:
            return (f"burstwatch printed `{ln}`, but seq {a} to {b} is {b - a + 1} events: in account(), N is the "
                    "size of the gap, seq - lastSeq - 1 (Task 3).")
        if first is not None and a < first:
            return (f"burstwatch printed `{ln}`, but the first record it read was seq {first}: the first record "
                    "ever read is the baseline, and what came before it cannot be known. In account(), name a gap "
                    "only once lastSeq is set (after the first record) (Task 3).")
        named += n
    t = TOTAL.match(lines[-1]) if lines else None
    if t and int(t.group(4)) != named:
        return (f"burstwatch's totals say {t.group(4)} lost, but its `lost` lines name {named} events: in "
                "account(), add the size of each gap to eventsLost, not 1 per gap (Task 3).")
    return ""


def press_release(vm: VmLab, w: GuestProc) -> None:
    """Two events read one by one: the program knows the last seq, so whatever the ring overwrites
    later is a gap it can name (before its first record it cannot know what it missed)."""
    for what in ("press", "release"):
        vm.button(what)
        line = said(vm, w, r"^SIGIO ", msg=f"The button was {what}ed while burstwatch was watching.")
        if not re.match(r"SIGIO \d+: read 1, seq (\d+) to \1$", line):
            vm.fail(w.explain(f"The button was {what}ed with nothing else in the ring, and burstwatch printed "
                              f"`{line}`: its drain should have read that one record (`read 1, seq S to S`). "
                              "A read(2) may return fewer bytes than asked: every whole record it returned "
                              "counts (n / sizeof(struct button_event)), and the drain goes on until EAGAIN."))


def deliveries(lines: list[str]) -> list[re.Match[str]]:
    return [m for m in map(DELIVERY.match, lines) if m]


def short_totals(events: int, made: int) -> str:
    """The message when burstwatch's totals count fewer events than the driver made (its read plus lost
    add up): the rest were never read, so they were still in the ring when it closed the device."""
    return (f"burstwatch's totals count {events} events, but the driver made {made}: {made - events} were neither "
            "read nor named lost, so they were still in the ring when burstwatch closed /dev/button. One SIGIO "
            "stands for one or more events (a pending SIGIO merges the signals of the events after it): the "
            "handler must read until EAGAIN, and at exit read what is left (drain(): Task 2, \"read every record, "
            "however few the signals\").")


# --- Task 1: one signal, many events -----------------------------------------------------

@pytest.mark.prereq
def test_burstwatch_builds(vm_lab: VmLab) -> None:
    vm_lab.build.program("burstwatch")


@graded(task=1, points=6)
def test_a_press_and_a_release_are_sigio_deliveries_1_and_2(vm: VmLab) -> None:
    w = watch(vm)
    vm.button("press")
    a = said(vm, w, r"^SIGIO ", msg="The button was pressed: burstwatch's SIGIO handler should count the delivery "
                    "and print `SIGIO 1: read 1, seq S to S`.")
    vm.button("release")
    b = said(vm, w, r"^SIGIO ", msg="The button was released after the press's SIGIO was handled: a second "
                    "delivery, `SIGIO 2: ...`.")
    if not a.startswith("SIGIO 1: ") or not b.startswith("SIGIO 2: "):
        vm.fail(w.explain(f"burstwatch printed `{a}` and `{b}` for a press, then a release: two SIGIO deliveries, "
                          "numbered 1 and 2 (count them in the handler)."))


@graded(task=1, points=7)
def test_sigio_held_through_a_burst_is_delivered_once(vm: VmLab) -> None:
    w = watch(vm)
    hold(vm, w)
    vm.button(f"burst {RING // 2} 0")  # as many edges as the ring holds: nothing is overwritten
    take(vm, w)
    said(vm, w, r"^SIGIO ", msg=f"SIGIO was held (blocked) through {RING} events; taking it again must deliver it.")
    lines = finish(vm, w)
    k = kernel_sigio(vm, w)
    got = deliveries(lines)
    if len(got) != 1 or got[0].group(1) != "1" or totals(vm, w, lines)[1] != 1 or k.taken != 1:
        vm.fail(w.explain(f"burstwatch counted {len(got)} SIGIO deliveries for a burst held in one pending SIGIO "
                          f"(the kernel delivered {k.taken}): while SIGIO was held, {RING} events each called "
                          f"kill_fasync(); the kernel made one SIGIO pending and merged the other {RING - 1} into "
                          "it, so taking it again is exactly one delivery (`SIGIO 1: ...`, and `... in 1 SIGIO "
                          "deliveries` at the end). Is SIGIO blocked while holding, both in main's own mask (blocked from "
                          "the start, outside sigsuspend()) and in heldMask, the mask of sigsuspend()?"))


@graded(task=1, points=7)
def test_the_deliveries_counted_are_those_the_kernel_made(vm: VmLab) -> None:
    w = watch(vm)
    vm.button("burst 1000 0", timeout=60)
    lines = finish(vm, w)
    k = kernel_sigio(vm, w)
    got = [int(m.group(1)) for m in deliveries(lines)]
    _, counted, _, _ = totals(vm, w, lines)
    if k.taken == 0:
        vm.fail(w.explain("`button burst 1000 0` made 2000 events, and the kernel delivered no SIGIO to "
                          "burstwatch: F_SETOWN must name burstwatch itself, getpid() (the kernel's record "
                          "above shows who got what)."))
    if got != list(range(1, len(got) + 1)) or len(got) != k.taken or counted != k.taken:
        vm.fail(w.explain(f"burstwatch printed {len(got)} `SIGIO N:` lines and counted {counted} deliveries, but "
                          f"the kernel delivered SIGIO to it {k.taken} times (during `button burst 1000 0`, 2000 "
                          "events). Count once per run of the SIGIO handler, number the lines 1, 2, 3..."))


@graded(task=1, points=5)
def test_the_last_line_counts_events_and_deliveries(vm: VmLab) -> None:
    w = watch(vm)
    s0 = seq_now(vm)
    press_release(vm, w)
    vm.button("burst 100 0")
    lines = finish(vm, w)
    events, counted, read, lost = totals(vm, w, lines)
    made = seq_now(vm) - s0
    k = kernel_sigio(vm, w)
    # Fewer events than made, read + lost adding up: records left in the ring, the drain's (Task 2), whose
    # tests fail for it and name it; here the count of deliveries and the sum are Task 1's.
    short = events < made and read + lost == events
    if (events != made and not short) or read + lost != events or counted != k.taken:
        trouble = account_trouble(lines)
        if trouble and counted == k.taken:
            return  # the deliveries are right; the lost count is Task 3's, whose tests say what is wrong
        if trouble:
            vm.fail(w.explain(trouble))
        vm.fail(w.explain(f"burstwatch's last line does not count the events and deliveries: after a press, a "
                          f"release and `button burst 100 0` ({made} events, {k.taken} SIGIO taken) it should read "
                          f"`{made} events in {k.taken} SIGIO deliveries: R read, L lost` with R + L = {made}."))


# --- Task 2: read every record, however few the signals --------------------------------------

@graded(task=2, points=9)
def test_one_sigio_reads_every_record_of_a_held_burst(vm: VmLab) -> None:
    w = watch(vm)
    hold(vm, w)
    s0 = seq_now(vm)
    vm.button(f"burst {RING // 2} 0")
    take(vm, w)
    line = said(vm, w, r"^SIGIO ")
    want = f"SIGIO 1: read {RING}, seq {s0 + 1} to {s0 + RING}"
    if line != want:
        vm.fail(w.explain(f"burstwatch printed `{line}` for one SIGIO behind which {RING} events waited in the "
                          f"ring; its handler should read them all (read(2) until EAGAIN, not one record per "
                          f"signal): expected `{want}`."))


@graded(task=2, points=6)
def test_every_event_of_a_fast_burst_is_read_or_named_lost(vm: VmLab) -> None:
    w = watch(vm)
    s0 = seq_now(vm)
    press_release(vm, w)
    vm.button("burst 1000 0", timeout=60)
    lines = finish(vm, w)
    s1 = seq_now(vm)
    reads, losts = [], []
    for ln in lines:
        m = DELIVERY.match(ln) or AT_EXIT.match(ln)
        if m and m.group(m.re.groups - 1):
            reads.append((int(m.group(m.re.groups - 1)), int(m.group(m.re.groups)), int(m.group(m.re.groups - 2))))
        m = LOST.match(ln)
        if m:
            losts.append((int(m.group(2)), int(m.group(3)), int(m.group(1))))
    covered: set[int] = set()
    lost: set[int] = set()
    for a, b, _ in reads + losts:
        covered |= set(range(a, b + 1))
    for a, b, n in losts:
        lost |= set(range(a, b + 1))
    _, _, total_read, total_lost = totals(vm, w, lines)
    ok = (covered == set(range(s0 + 1, s1 + 1)) and sum(n for _, _, n in losts) == len(lost)
          and sum(n for _, _, n in reads) == len(covered - lost) == total_read and len(lost) == total_lost)
    if not ok:
        missing = set(range(s0 + 1, s1 + 1)) - covered
        trouble = account_trouble(lines)
        needed = set(range(s0 + 1, s1 + 1))
        if trouble and needed <= covered and sum(n for _, _, n in reads) == total_read:
            return  # every event was read or named; the `lost` lines' errors are Task 3's, whose tests say so
        if trouble:
            vm.fail(w.explain(trouble))
        later = max((b for a, b, _ in reads), default=0)
        if missing and min(missing) < later:
            vm.fail(w.explain(f"{len(missing)} of the events seq {s0 + 1} to {s1} were neither read nor named lost, "
                              f"seq {min(missing)} among them, though burstwatch read seq {later} later: the ring "
                              "is first in, first out, so they were overwritten (or read and dropped) and no "
                              "`lost` line names them. account() must compare each record's seq with the last "
                              "seq read in any drain before it (lastSeq lives as long as the program) (Task 3)."))
        if missing and total_read + total_lost < s1 - s0:
            vm.fail(w.explain(short_totals(total_read + total_lost, s1 - s0)))
        head = (f"{len(missing)} of the events seq {s0 + 1} to {s1} were neither read nor named lost" if missing
                else "burstwatch's lines do not add up to its totals")
        vm.fail(w.explain(f"{head}: a press, a release and `button burst 1000 0` made the events seq {s0 + 1} to "
                          f"{s1}. Each must be read by some delivery's drain (`SIGIO N: read R, seq A to B`, or "
                          "`at exit: ...`) or named in a `lost N: seq A to B` line, and the totals must add up: "
                          "read every record until EAGAIN, and at exit read what is left."))


@graded(task=2, points=5)
def test_a_sigio_with_nothing_to_read_reads_nothing_and_goes_on(vm: VmLab) -> None:
    w = watch(vm)
    vm.run(f"kill -IO {w.pid}", what="kill -IO")  # stands for a SIGIO whose record an earlier drain took
    line = said(vm, w, r"^SIGIO ", msg="A SIGIO came with nothing in the ring (its record was read by an "
                       "earlier drain).")
    if line != "SIGIO 1: read 0":
        vm.fail(w.explain(f"burstwatch printed `{line}` for a SIGIO with nothing to read: expected `SIGIO 1: read "
                          "0` (the first read(2) fails with EAGAIN)."))
    s0 = seq_now(vm)
    vm.button("press")
    line = said(vm, w, r"^SIGIO ", msg="After an empty SIGIO the button was pressed: the handler should go on "
                       "working (a read that blocks in the handler would hang it: O_NONBLOCK).")
    if line != f"SIGIO 2: read 1, seq {s0 + 1} to {s0 + 1}":
        vm.fail(w.explain(f"burstwatch printed `{line}` for a press after an empty SIGIO: expected `SIGIO 2: read 1, "
                          f"seq {s0 + 1} to {s0 + 1}`."))
    other = [ln for ln in w.output().splitlines()[1:] if not DELIVERY.match(ln) and not LOST.match(ln)]
    if other:
        vm.fail(w.explain(f"burstwatch printed `{other[0]}` besides its `SIGIO N:` lines, for two deliveries whose "
                          "drains each ended as every drain does: read(2) failed with EAGAIN. That is a drain's "
                          "normal end, not an error: report only the other errors (not EAGAIN, not EINTR)."))


@graded(task=2, points=5)
def test_at_exit_what_is_left_is_read(vm: VmLab) -> None:
    w = watch(vm)
    hold(vm, w)
    s0 = seq_now(vm)
    vm.button("press")  # its SIGIO stays pending, blocked: only the exit's read can see the record
    st = w.state()  # asleep in its wait: during sigsuspend() SigBlk is the mask it waits with
    if st is not None and not st.blocked >> (signal.SIGIO - 1) & 1:
        vm.fail(w.explain(f"SIGIO is not blocked while burstwatch holds it: after `holding SIGIO`, SigBlk in "
                          f"/proc/{w.pid}/status reads {st.blocked:016x}, without SIGIO (bit {signal.SIGIO}), while "
                          f"burstwatch is {st.describe()}. Wait in sigsuspend() with heldMask, the original mask "
                          "plus SIGIO: then a press's SIGIO stays pending, and its record waits for the next "
                          "drain."))
    lines = finish(vm, w)
    want = [f"at exit: read 1, seq {s0 + 1} to {s0 + 1}", "1 events in 0 SIGIO deliveries: 1 read, 0 lost"]
    t = TOTAL.match(lines[-1]) if lines else None
    if lines[-2:-1] == want[:1] and t and t.group(2, 3) == ("0", "1") and account_trouble(lines):
        return  # what is left was read at exit; the lost count is Task 3's, whose tests say what is wrong
    held = after(lines, "holding SIGIO")
    taken = [ln for ln in held if DELIVERY.match(ln)]
    if lines[-2:] != want and taken:
        vm.fail(w.explain(f"burstwatch took SIGIO (`{taken[0]}`) after `holding SIGIO`, before its exit's drain: "
                          "when SIGTERM ended sigsuspend(), main's own mask did not block SIGIO, so the pending "
                          "SIGIO ran its handler. Every signal burstwatch handles stays blocked outside "
                          "sigsuspend(): block SIGIO in main's mask from the start (Task 1)."))
    if lines[-2:] != want:
        vm.fail(w.explain("burstwatch did not end by reading at exit what was left: while SIGIO was held the button "
                          "was pressed, then SIGTERM came; it should read what is left (drain() once more, all "
                          "signals blocked) and end with:\n" + "\n".join(f"    | {x}" for x in want)))


# --- Task 3: name what the ring overwrote --------------------------------------------------

def overflow(vm: VmLab, w: GuestProc, clicks: int) -> int:
    """Hold SIGIO through `clicks` clicks (more than the ring holds), take it; the seq before the burst."""
    hold(vm, w)
    s0 = seq_now(vm)
    vm.button(f"burst {clicks} 0")
    take(vm, w)
    return s0


def expect_lost(vm: VmLab, w: GuestProc, s0: int, clicks: int, n: int) -> None:
    gone = 2 * clicks - RING
    want = [f"lost {gone}: seq {s0 + 1} to {s0 + gone}",
            f"SIGIO {n}: read {RING}, seq {s0 + gone + 1} to {s0 + 2 * clicks}"]
    got: list[str] = []
    for _ in want:  # a SIGIO line first: no `lost` line will come before it, compare now
        got.append(said(vm, w, r"^(lost|SIGIO) ", msg=f"SIGIO was held through {2 * clicks} events; the ring kept "
                        f"the newest {RING}."))
        if got[-1].startswith("SIGIO "):
            break
    if got != want:
        vm.fail(w.explain(f"burstwatch did not name the events the ring overwrote as one exact range: SIGIO was "
                          f"held through {2 * clicks} events (seq {s0 + 1} to {s0 + 2 * clicks}); the driver's ring "
                          f"kept the newest {RING}, so the jump in seq after {s0} says exactly what was "
                          "overwritten. Expected:\n" + "\n".join(f"    | {x}" for x in want)
                          + "\n  burstwatch printed:\n" + "\n".join(f"    | {x}" for x in got)))


@graded(task=3, points=10)
def test_an_overflow_is_named_as_the_exact_seq_range_lost(vm: VmLab) -> None:
    w = watch(vm)
    press_release(vm, w)
    s0 = overflow(vm, w, 100)
    expect_lost(vm, w, s0, 100, 3)


@graded(task=3, points=5)
def test_the_last_line_counts_the_lost_events(vm: VmLab) -> None:
    w = watch(vm)
    press_release(vm, w)
    overflow(vm, w, 100)
    said(vm, w, r"^SIGIO 3: ", msg="SIGIO was held through a burst, then taken: the third delivery.")
    lines = finish(vm, w)
    want = f"202 events in 3 SIGIO deliveries: {2 + RING} read, {200 - RING} lost"
    if lines[-1:] != [want]:
        trouble = account_trouble(lines)
        if trouble:
            vm.fail(w.explain(trouble))
        vm.fail(w.explain(f"burstwatch's last line is not `{want}`: a press, a release, then 200 events of which "
                          f"the ring kept {RING}."))


@graded(task=3, points=5)
def test_two_overflows_are_two_lost_ranges(vm: VmLab) -> None:
    w = watch(vm)
    press_release(vm, w)
    s0 = overflow(vm, w, 40)
    expect_lost(vm, w, s0, 40, 3)
    s1 = overflow(vm, w, 50)
    expect_lost(vm, w, s1, 50, 4)


# --- Task 4: debounce in the driver (the student's driver) -----------------------------------

@pytest.mark.prereq
def test_the_module_builds_with_no_warnings(vm_lab: VmLab) -> None:
    vm_lab.check_module_build()


def debounced(vm: VmLab, ms: int = WINDOW_MS) -> GuestProc:
    """The student's driver with debounce_ms=ms, and a reader holding /dev/button open."""
    vm.use_driver("student", f"debounce_ms={ms}")
    r = vm.spawn("reader", "hold", "-a", helper=True)
    r.expect("^open$")
    return r


def parameter(vm: VmLab, ms: int) -> None:
    """The driver is loaded with debounce_ms=ms, and says so in sysfs (an unknown parameter is only ignored)."""
    value = vm.run("cat /sys/module/button_driver/parameters/debounce_ms", what="reading the parameter")
    if value.stdout.strip() != str(ms):
        vm.fail(f"`insmod button_driver.ko debounce_ms={ms}` loaded, but /sys/module/button_driver/parameters/"
                f"debounce_ms reads `{value.stdout.strip() or value.stderr.strip()}`, not {ms}: declare the "
                "parameter with module_param(debounce_ms, uint, 0444) (the kernel ignores a parameter a module "
                "does not declare).")


def settle(vm: VmLab, ms: int = WINDOW_MS) -> None:
    """Wait five windows in the guest: the driver's timer, due within one, has fired by then (timers
    fire in the order they are due)."""
    vm.run(f"usleep {5 * ms * 1000}", timeout=10 + ms / 100, what="waiting for the debounce timer")


def records(vm: VmLab, r: GuestProc) -> list[tuple[int, int]]:
    """Tell the reader to read everything; its records as (seq, pressed)."""
    r.signal("USR1")
    r.expect(r"^drained ", msg="The grader's reader read /dev/button.")
    return [(int(s), int(p)) for s, p, _ in REC.findall(r.output())]


def press_and_release(vm: VmLab, r: GuestProc, got: list[tuple[int, int]], what: str) -> None:
    if len(got) != 2 or [p for _, p in got] != [1, 0] or got[1][0] != got[0][0] + 1:
        vm.fail(r.explain(f"The reader got {len(got)} records, not one press and one release: {got[:12]}. {what} "
                          f"With debounce_ms={WINDOW_MS} that is two records, pressed=1 then 0, consecutive seq."))


@graded(task=4, points=4)
def test_debounce_ms_is_a_parameter_and_0_keeps_every_edge(vm: VmLab) -> None:
    r = debounced(vm, 0)
    parameter(vm, 0)
    vm.sh("button bounce 2 100")
    vm.button("click 5000")
    settle(vm)
    got = records(vm, r)
    if len(got) != 10:
        vm.fail(r.explain(f"The reader got {len(got)} records for 10 edges with debounce_ms=0: then every edge is "
                          "an event, as in lab 3 (a click bouncing twice each way is 10 edges, so 10 records)."))


@graded(task=4, points=8)
def test_a_bouncing_click_reads_as_one_press_and_one_release(vm: VmLab) -> None:
    r = debounced(vm)
    vm.sh("button bounce 5 100")  # 10 extra edges each way over 1 ms: 20 times shorter than the window
    vm.button("click 200000")  # held 200 ms: 10 windows
    settle(vm)
    press_and_release(vm, r, records(vm, r), "A click bouncing 5 times each way (22 edges) was read.")


@graded(task=4, points=5)
def test_a_debounced_click_sends_one_sigio_per_event_not_per_edge(vm: VmLab) -> None:
    r = debounced(vm)
    vm.sh("button bounce 5 100")
    vm.button("click 200000")
    settle(vm)
    got = records(vm, r)
    rec = vm.witness.record([r.pid]) if vm.witness else None
    k = rec.count(r.pid, "SIGIO") if rec else None
    if k is None or k.generated != len(got) or len(got) != 2:
        vm.fail(r.explain(f"The kernel generated {k.generated if k else '?'} SIGIO for the reader, which read "
                          f"{len(got)} records: a registered reader should get one SIGIO per event the driver "
                          "reports (2 here), not one per edge (22): call kill_fasync() where the event is recorded."))


@graded(task=4, points=5)
def test_a_bounce_longer_than_the_window_still_reads_as_one_press(vm: VmLab) -> None:
    r = debounced(vm)
    vm.sh("button bounce 10 3000")  # 20 edges 3 ms apart: 60 ms of bouncing, each gap under the window
    vm.button("click 400000")
    settle(vm)
    press_and_release(vm, r, records(vm, r), "A click bouncing 10 times each way, 3 ms apart (60 ms, longer than "
                      "the window, each gap shorter), was read. Restart the timer at every edge: it may fire only "
                      "once the line has been quiet for the whole window.")


@graded(task=4, points=4)
def test_a_glitch_shorter_than_the_window_is_no_event(vm: VmLab) -> None:
    r = debounced(vm)
    vm.button("click 2000")  # pressed for 2 ms, 10 times shorter than the window
    settle(vm)
    # Read now, before the press: a filter with no timer (an interrupt handler that takes the first edge
    # after a quiet window and drops those within debounce_ms of it) reports the glitch's press, and may
    # then drop the real press as "no change", so that the pressed values alone read right in the end.
    # Only a timer can wait for the line to be stable before it reports.
    early = records(vm, r)
    if early and early[0][1] == 1:
        vm.fail(r.explain(f"The driver reported a 2 ms glitch as a press ({early[:12]}): it reported at the glitch's "
                          f"first edge, before the line had been stable for the window. With debounce_ms={WINDOW_MS} "
                          "a level counts only once the line has been stable for the whole window: each edge "
                          "restarts a timer, and the timer, when it fires, reads the settled level (released again "
                          "here: no event). A filter in the interrupt handler that takes the first edge at once and "
                          "drops the edges within the window after it cannot see that the line went back."))
    if early:
        vm.fail(r.explain(f"The driver reported a 2 ms glitch as {early[:12]}: the line settled released, as it was "
                          "before, so no event. Report the settled level only if it differs from the last one "
                          "reported."))
    r = vm.spawn("reader", "hold", "-a", helper=True)  # the first one has read, and ended
    r.expect("^open$")
    vm.button("press")
    settle(vm)
    got = records(vm, r)
    if [p for _, p in got] != [1]:
        vm.fail(r.explain(f"The reader got {got[:12]} for a press after a 2 ms glitch: when the timer fires after "
                          "the glitch the line reads released, as before, so no event; then one press. Read the "
                          "settled level when the timer fires."))


# rmmod's teardown, as the kernel saw it: kprobe events on free_irq() and on the timer cancels, with the
# cancelled timer's callback (struct hrtimer's .function at offset 40, struct timer_list's at 24, in 6.1 and
# 6.12 alike), enabled in a tracefs instance of its own, beside sigtrace's. Defined once per VM, left disarmed.
TEARDOWN = "/sys/kernel/tracing/instances/wb-teardown"
TEARDOWN_PROBES = [("free_irq", "irq=%di:u32"), ("hrtimer_cancel", "fn=+40(%di):x64"),
                   ("hrtimer_try_to_cancel", "fn=+40(%di):x64"), ("del_timer_sync", "fn=+24(%di):x64"),
                   ("timer_delete_sync", "fn=+24(%di):x64"), ("timer_shutdown_sync", "fn=+24(%di):x64")]
TEARDOWN_LINE = re.compile(r"^\s*rmmod-\d+\s.*?: (\w+): \(.*?\)(?: irq=(\d+))?(?: fn=(0x[0-9a-f]+))?\s*$", re.M)


def rmmod_teardown(vm: VmLab) -> tuple[CmdResult, list[tuple[str, str]]]:
    """rmmod the driver; its result and, in order, rmmod's calls of free_irq() ("free_irq", irq) and its
    cancels of a timer whose callback is the module's (the function's name, the callback's symbol)."""
    tracing = "/sys/kernel/tracing"
    define = "; ".join(f"echo 'p:wbteardown/{fn} {fn} {args}' >> {tracing}/kprobe_events 2>/dev/null"
                       for fn, args in TEARDOWN_PROBES)
    vm.sh(f"[ -d {tracing}/events/wbteardown ] || {{ {define}; }}; mkdir -p {TEARDOWN} && cd {TEARDOWN} && "
          "echo > trace && echo 1 > events/wbteardown/enable", what="tracing free_irq() and the timer cancels")
    symbols = vm.module_symbols()
    r = vm.run("rmmod button_driver", timeout=20, what="rmmod button_driver")
    trace = vm.sh(f"cd {TEARDOWN} && echo 0 > events/wbteardown/enable && cat trace", what="reading rmmod's trace")
    calls = []
    for fn, irq, callback in TEARDOWN_LINE.findall(trace):
        if fn == "free_irq":
            calls.append((fn, irq))
        elif callback and int(callback, 16) in symbols:
            calls.append((fn, symbols[int(callback, 16)]))
    return r, calls


@graded(task=4, points=2)
def test_rmmod_frees_the_irq_before_it_cancels_the_timer(vm: VmLab) -> None:
    vm.use_driver("student", "debounce_ms=1000")
    parameter(vm, 1000)
    r, calls = rmmod_teardown(vm)
    if not r.ok:
        vm.fail(f"`rmmod button_driver` failed with no file open: {(r.stderr or r.stdout).strip()}.")
    frees = [i for i, (fn, _) in enumerate(calls) if fn == "free_irq"]
    cancels = [i for i, (fn, _) in enumerate(calls) if fn != "free_irq"]
    if not frees:
        vm.fail("`rmmod button_driver` freed no IRQ (the kernel saw no free_irq() call): the interrupt handler "
                "would outlive the module. Request the IRQ with devm_request_irq(), which frees it when the "
                "device goes.")
    if not cancels:
        vm.fail("`rmmod button_driver` cancelled no timer of the driver's (the kernel saw no hrtimer_cancel() of "
                "a timer whose callback is in button_driver): a pending debounce timer would fire after the "
                "module is gone. Cancel it when the device goes, in a devm action (TODO 4).")
    if cancels[-1] < frees[-1]:
        fn, callback = calls[cancels[0]]
        vm.fail(f"`rmmod button_driver` cancelled the debounce timer ({fn}() of the timer that calls {callback}()) "
                "before it freed the IRQ (free_irq()): an edge between the two runs the handler, which starts "
                "the timer again, and it then fires after the module is gone. devm actions run in the reverse "
                "order they were added: add the cancel action before devm_request_irq(), so that it runs after "
                "the IRQ is freed.")


@graded(task=4, points=2)
def test_rmmod_with_a_debounce_pending_is_safe(vm: VmLab) -> None:
    vm.use_driver("student", "debounce_ms=1000")
    parameter(vm, 1000)
    vm.button("press")  # the timer is now due in 1 s
    r = vm.run("rmmod button_driver", timeout=20, what="rmmod button_driver")
    if not r.ok:
        vm.fail(f"`rmmod button_driver` failed with no file open: {(r.stderr or r.stdout).strip()}.")
    try:
        vm.run("usleep 1500000", timeout=15, what="waiting past the debounce window")  # an Oops fails here
    except pytest.fail.Exception as e:
        pytest.fail(f"{e.msg}\n  The test unloaded the driver (rmmod) while its debounce timer was pending (a press "
                    "with debounce_ms=1000, then rmmod at once); the kernel failed after the module was gone, while "
                    "the timer was still due. Cancel the timer when the device goes, after the IRQ is freed (an "
                    "edge could start it again): hrtimer_cancel() (del_timer_sync() for a timer_list) in a devm "
                    "action added before devm_request_irq(), or in remove() after freeing the IRQ.",
                    pytrace=False)
    vm.use_driver("student", f"debounce_ms={WINDOW_MS}")
    vm.button("release")
