"""Lab 3: the fasync button driver (button_driver.ko) and buttonwatch, graded in the VM.

One boot for the whole lab (the `vm` fixture, gradelib/vmlab.py): the module is
built with W=1, the board (driver/wb_board.ko) is loaded, and every test
presses the button with `button`, which returns once the interrupt handler
has run.  Programs print a line when they are set up (buttonwatch: `ready`;
the grader's probe: `open`, `registered`), and the tests wait for lines, never
for time.  Between tests the module is reloaded, so every test starts with a
freshly probed device (its first interrupt is seq 1) and no state left by the
test before it.

The probe (grader/guest/probe.c) is the grader's own program: it uses the
device the way the chapter describes and prints what it saw, so a test can
tell the driver's part from buttonwatch's.  The student's buttonwatch runs as
an unprivileged user; the probe, as root, out of its reach.

Each test checks one behaviour the chapter asks for; the chapter's
"Graded:" paragraphs list them.
"""
from __future__ import annotations

import re
import signal

import pytest

from gradelib.lab import Program
from gradelib import kcontext
from gradelib.vmlab import GuestProc, VmLab, VmLabSpec

LAB = VmLabSpec(
    3, "03-fasync-button",
    programs={"buttonwatch": Program(["buttonwatch.c"], sanitize=False)},
    module="button_driver",
    helpers=("probe",),
    harness=("raceinject", "asyncorder"),
    devices=("/dev/button",),
    binds=("wb-button",),
)

EVENT = re.compile(r"^event (\d+): (pressed|released) at (\d+) ns$")
REC = re.compile(r"^rec (\d+) (\d) (\d+)$", re.M)
RECORD = 16  # sizeof(struct button_event)
BURST = 10000  # clicks: 2 * BURST events
BURST_US = 2  # one click every 2 us: as fast as the board goes
POLLIN_RDNORM = 0x41


def graded(task: int, points: int):
    return pytest.mark.graded(task=task, points=points)


def records(text: str) -> list[tuple[int, int, int]]:
    return [(int(s), int(p), int(t)) for s, p, t in REC.findall(text)]


def reads(text: str) -> list[str]:
    """The results of the probe's read(2) calls: "16", "-1 EINVAL", ..."""
    return re.findall(r"^read (.+)$", text, re.M)


def ring_size(vm: VmLab) -> int:
    """BUTTON_RING_SIZE from the submission's button_event.h (the documented size)."""
    try:
        text = (vm.build.root / "src" / "button_event.h").read_text()
    except OSError:
        return 64
    m = re.search(r"#\s*define\s+BUTTON_RING_SIZE\s+\(?(\d+)", text)
    return int(m.group(1)) if m and 1 <= int(m.group(1)) <= 65536 else 64


def loaded(vm: VmLab) -> None:
    vm.load_module()


def edge_trouble(vm: VmLab) -> str:
    """When the driver asked for an interrupt on one edge only (the board's record of the trigger it was
    given: `button stats 0`), what that costs: a press or a release is no event. "" otherwise."""
    r = vm.run("button stats 0", what="reading the board's counters")
    if not r.ok:  # no board to ask: nothing to add to the message
        return ""
    stats = dict(ln.split(" ", 1) for ln in r.stdout.splitlines() if " " in ln)
    trigger = stats.get("trigger", "").strip()
    if stats.get("irq_requested", "").strip() != "1" or trigger not in ("rising", "falling"):
        return ""
    missed = "press" if trigger == "rising" else "release"
    return (f"The driver requested its IRQ on the {trigger} edge only (the board's record of the trigger: `button "
            f"stats 0`), so a {missed} makes no interrupt and no record ({stats.get('ignored', '?').strip()} edges "
            "ignored so far). Request it on both edges, IRQF_TRIGGER_RISING | IRQF_TRIGGER_FALLING (the button is "
            "active low: a press is a falling edge, a release a rising one).")


def holding(vm: VmLab, *sizes: int) -> GuestProc:
    """A probe with /dev/button open (O_NONBLOCK) that reads nothing until SIGUSR1, then one read(2)
    of each size, then everything left."""
    loaded(vm)
    p = vm.spawn("probe", "hold", *map(str, sizes), helper=True)
    p.expect("^open$")
    return p


def read_now(p: GuestProc) -> str:
    p.signal("USR1")
    p.expect("^drained ", msg="The probe read /dev/button after the presses.")
    return p.output()


# --- prerequisites --------------------------------------------------------------

@pytest.mark.prereq
def test_the_module_builds_with_no_warnings(vm_lab: VmLab) -> None:
    vm_lab.check_module_build()


@pytest.mark.prereq
def test_the_module_calls_only_kernel_functions_a_driver_needs(vm_lab: VmLab) -> None:
    if vm_lab.refusal:
        pytest.fail(vm_lab.refusal, pytrace=False)


@pytest.mark.prereq
def test_buttonwatch_builds(vm_lab: VmLab) -> None:
    vm_lab.build.program("buttonwatch")


@pytest.mark.prereq
def test_the_module_loads_and_creates_dev_button(vm: VmLab) -> None:
    vm.load_module()
    r = vm.run("test -c /dev/button", what="looking for /dev/button")
    if not r.ok:
        vm.fail("button_driver.ko loaded, but /dev/button is not a character device: does probe() "
                "misc_register() a device named \"button\"? (Is the driver's name \"wb-button\", so that "
                "it binds to the board's device?)")


# --- Task 1: events in a ring; read and poll ------------------------------------------------

@graded(task=1, points=3)
def test_rmmod_frees_the_irq_and_removes_dev_button(vm: VmLab) -> None:
    loaded(vm)
    if vm.irq_count() is None:
        vm.fail("/proc/interrupts has no IRQ for button_driver: probe() must request the button's IRQ "
                "(devm_gpiod_get(), gpiod_to_irq(), devm_request_irq() with the name KBUILD_MODNAME).")
    r = vm.run("rmmod button_driver", timeout=20, what="rmmod button_driver")
    if not r.ok:
        vm.fail(f"`rmmod button_driver` failed with no file open: {(r.stderr or r.stdout).strip()}. "
                "A module must unload when nobody uses it (does it take a reference it never drops?).")
    left = []
    if vm.run("test -e /dev/button").ok:
        left.append("/dev/button is still there (misc_deregister() in remove())")
    if vm.irq_count() is not None:
        left.append("its IRQ is still in /proc/interrupts (free the IRQ, or use devm_request_irq())")
    if left:
        vm.fail("After rmmod: " + "; ".join(left) + ".")
    vm.load_module()
    vm.button("click")  # the IRQ of the unloaded module is gone: the board just changes the line


@graded(task=1, points=4)
def test_the_first_press_is_read_as_one_record_with_seq_1(vm: VmLab) -> None:
    loaded(vm)
    p = vm.spawn("probe", "read", helper=True)
    p.expect("^open$")
    vm.button("press")
    line = p.expect(r"^read ", msg="A reader was blocked in read(2) on /dev/button when the button was pressed.")
    if line.startswith("read -1"):
        vm.fail(p.explain(f"read(2) of /dev/button failed after a press ({line[8:]}): it should sleep until an "
                          "event is in the ring, then return it."))
    p.expect("^now ")
    text = p.output()
    n = int(line.split()[1])
    recs = records(text)
    now = int(re.search(r"^now (\d+)", text, re.M).group(1))
    if n != RECORD or not recs:
        vm.fail(p.explain(f"After one press, read(2) with room for 4 records returned {n} bytes; expected exactly "
                          f"one struct button_event ({RECORD} bytes)."))
    seq, pressed, t = recs[0]
    unhandled = vm.run(f"cat /proc/irq/{vm.irq_number()}/spurious 2>/dev/null", timeout=10).stdout
    m = re.search(r"unhandled (\d+)", unhandled)
    if m and int(m.group(1)):
        vm.fail(p.explain(f"The kernel counted {m.group(1)} interrupt(s) of the button as unhandled "
                          f"(/proc/irq/N/spurious): the handler returned IRQ_NONE. Return IRQ_HANDLED for the "
                          f"interrupts of your device (IRQ_NONE tells the kernel the interrupt was not yours, and "
                          f"after too many it disables the line)."))
    if pressed != 1:
        vm.fail(p.explain(f"The record of a press says pressed={pressed}; expected 1 (gpiod_get_value() is "
                          "1 while the button is down: the line is active low)."))
    if not (0 < t <= now and now - t < 30_000_000_000):
        vm.fail(p.explain(f"The record's time_ns {t} is not a CLOCK_MONOTONIC time in the last seconds "
                          f"(now: {now}): use ktime_get_ns() in the handler."))
    if seq != 1:
        if vm.reload_failed:
            vm.fail(p.explain(f"The first press has seq {seq}, but the grader could not reload the module before "
                              f"this test ({vm.reload_failed}), so this is not the first event after probe(): make "
                              "rmmod work first (the test above)."))
        vm.fail(p.explain(f"The first interrupt after the driver was loaded has seq {seq}; the chapter numbers "
                          "events from 1: start the device's counter at 0 in probe() and add 1 before each event."))


@graded(task=1, points=3)
def test_a_release_is_read_as_a_released_record_with_the_next_seq(vm: VmLab) -> None:
    s = holding(vm)
    vm.button("press")
    vm.button("release")
    got = records(read_now(s))
    if len(got) != 2:
        vm.fail(s.explain(f"A reader open across a press and a release read {len(got)} record(s); "
                          "expected 2: one per interrupt (request the IRQ on both edges), each whole. "
                          + edge_trouble(vm)))
    (s1, p1, t1), (s2, p2, t2) = got
    if (p1, p2) != (1, 0):
        vm.fail(s.explain(f"Press then release gave pressed={p1} then pressed={p2}; expected 1 then 0."))
    if s2 != s1 + 1:
        vm.fail(s.explain(f"Press then release gave seq {s1} then {s2}; expected consecutive numbers."))
    if t2 < t1:
        vm.fail(s.explain(f"The release's time_ns {t2} is before the press's {t1}."))


@graded(task=1, points=4)
def test_one_read_returns_every_waiting_record_that_fits(vm: VmLab) -> None:
    s = holding(vm, 8 * RECORD)
    vm.button("press")
    vm.button("release")
    vm.button("click")
    text = read_now(s)
    first = reads(text)[:1]
    if first != [str(4 * RECORD)] and (edges := edge_trouble(vm)):
        vm.fail(s.explain(f"Four events should be waiting; read(2) returned {first[0] if first else 'nothing'} "
                          f"bytes. {edges}"))
    if first != [str(4 * RECORD)]:
        vm.fail(s.explain(f"Four events were waiting and read(2) had room for 8 records; it returned "
                          f"{first[0] if first else 'nothing'} bytes, expected {4 * RECORD}: copy as many whole "
                          "records as fit, not one per call."))
    if [q for _, q, _ in records(text)] != [1, 0, 1, 0]:
        vm.fail(s.explain("The four records should say pressed, released, pressed, released, in that order."))


@graded(task=1, points=3)
def test_a_read_returns_whole_records_only(vm: VmLab) -> None:
    s = holding(vm, 2 * RECORD + RECORD // 2)
    vm.button("press")
    vm.button("release")
    vm.button("press")
    text = read_now(s)
    first = reads(text)[:1]
    if first != [str(2 * RECORD)] and (edges := edge_trouble(vm)):
        vm.fail(s.explain(f"Three events should be waiting; read(2) returned {first[0] if first else 'nothing'} "
                          f"bytes. {edges}"))
    if first != [str(2 * RECORD)]:
        vm.fail(s.explain(f"Three events were waiting and read(2) had room for two and a half records "
                          f"({2 * RECORD + RECORD // 2} bytes); it returned {first[0] if first else 'nothing'}, "
                          f"expected {2 * RECORD}: whole records only, never part of one."))
    seqs = [q for q, _, _ in records(text)]
    if len(seqs) != 3 or seqs != list(range(seqs[0], seqs[0] + 3)):
        vm.fail(s.explain(f"After that read the third record should still be there: the reads together should "
                          f"give three consecutive seq numbers, each once; they gave {seqs}."))


@graded(task=1, points=3)
def test_a_read_smaller_than_a_record_fails_with_einval_and_loses_nothing(vm: VmLab) -> None:
    s = holding(vm, RECORD // 2, RECORD)
    vm.button("press")
    text = read_now(s)
    got = reads(text)
    if not got or got[0] != "-1 EINVAL":
        vm.fail(s.explain(f"read(2) with room for half a record returned `{got[0] if got else 'nothing'}`; "
                          "expected -1 with errno EINVAL: a buffer smaller than one record cannot hold one."))
    if len(got) < 2 or got[1] != str(RECORD):
        vm.fail(s.explain("After the EINVAL, the press's record should still be there for the next read(2): "
                          "check the size before taking a record from the ring."))


@graded(task=1, points=3)
def test_a_read_into_a_bad_address_fails_with_efault(vm: VmLab) -> None:
    loaded(vm)
    s = vm.spawn("probe", "efault", helper=True)
    s.expect("^open$")
    vm.button("press")
    s.signal("USR1")
    line = s.expect(r"^read ", msg="The probe read /dev/button into an address that is not mapped.")
    if line != "read -1 EFAULT":
        vm.fail(s.explain(f"read(2) into an unmapped address gave `{line}`; expected -1 with errno EFAULT: "
                          "copy_to_user() returns the number of bytes it could not copy; check it."))


@graded(task=1, points=3)
def test_a_nonblocking_read_of_an_empty_device_fails_with_eagain(vm: VmLab) -> None:
    loaded(vm)
    p = vm.spawn("probe", "nonblock", helper=True)
    line = p.expect(r"^read ")
    if line != "read -1 EAGAIN":
        vm.fail(p.explain(f"read(2) with O_NONBLOCK on an empty /dev/button gave `{line}`; expected -1 with "
                          "errno EAGAIN (check file->f_flags & O_NONBLOCK before sleeping)."))


def wait_asleep(vm: VmLab, p: GuestProc, call: str) -> None:
    """Until the program sleeps in `call` (so that what the test does next finds it there)."""
    r = vm.run(f"p=$(cat {p.base}.pid); i=0; while [ $i -lt 300 ]; do "
               f"set -- $(cat /proc/$p/syscall 2>/dev/null); s=$(sed 's/.*) //' /proc/$p/stat 2>/dev/null | cut -c1); "
               f"case \"$s\" in ''|Z) exit 1;; esac; "  # it ended: no use waiting
               f"[ \"$1\" = {'0' if call == 'read' else '7'} ] && [ \"$s\" != R ] && exit 0; "
               f"usleep 10000; i=$((i+1)); done; exit 1", timeout=10, what=f"waiting for the probe to sleep in {call}")
    if not r.ok:
        vm.fail(p.explain(f"The probe should be asleep in {call}() on an empty /dev/button, but it is not."))


def blocked_reader(vm: VmLab, mode: str) -> GuestProc:
    """The probe in `mode` (eintr, restart), asleep in read(2) on the empty device, where a signal can
    reach it (not in an uninterruptible sleep, which no signal ends)."""
    loaded(vm)
    p = vm.spawn("probe", mode, helper=True)
    p.expect("^open$")
    wait_asleep(vm, p, "read")
    st = p.state()
    if st is not None and st.state == "D":
        vm.button("click")  # wake it, so that the lab can go on
        vm.fail(p.explain(f"A reader blocked in read(2) is {st.describe()}: sleep with "
                          "wait_event_interruptible(), so that signals (and Ctrl-C) still reach the process."))
    return p


@graded(task=1, points=2)
def test_a_signal_interrupts_a_blocked_read(vm: VmLab) -> None:
    p = blocked_reader(vm, "eintr")
    p.signal("USR1")
    r = vm.run(f"i=0; while [ $i -lt 200 ]; do grep -q '^read ' {p.out} && exit 0; usleep 10000; i=$((i+1)); done; "
               f"exit 1", timeout=10)
    if not r.ok:
        st = p.state()
        vm.button("click")
        vm.fail(p.explain("A signal with a handler (no SA_RESTART) arrived while the probe was blocked in read(2) "
                          f"on the empty device, and read() did not return: it is {st.describe() if st else 'gone'}. "
                          "When wait_event_interruptible() returns an error (-ERESTARTSYS), return it."))
    line = p.expect(r"^read ")
    if line != "read -1 EINTR":
        vm.fail(p.explain(f"After a signal interrupted the blocked read(2) it returned `{line}`; expected -1 with "
                          "errno EINTR (return wait_event_interruptible()'s error)."))


@graded(task=1, points=1)
def test_a_handler_with_sa_restart_leaves_a_blocked_read_waiting(vm: VmLab) -> None:
    p = blocked_reader(vm, "restart")
    p.signal("USR1")
    p.expect("^handler$", msg="The probe's SIGUSR1 handler (with SA_RESTART) ran while it was blocked in read(2).")
    vm.button("press")
    line = p.expect(r"^read ", msg="After the handler, the probe was still in read(2) when the button was pressed.")
    if line == "read -1 EINTR":
        vm.fail(p.explain("A signal whose handler has SA_RESTART arrived while the probe was blocked in read(2), and "
                          "read() failed with EINTR: the kernel restarts the call after such a handler only when "
                          "read returns -ERESTARTSYS, what wait_event_interruptible() returned. Return its error, "
                          "not -EINTR: the kernel itself turns -ERESTARTSYS into EINTR for a handler without "
                          "SA_RESTART."))
    if line != f"read {RECORD}":
        vm.fail(p.explain(f"After a handler with SA_RESTART ran, the restarted read(2) should return the press's "
                          f"record ({RECORD} bytes); it returned `{line}`."))


@graded(task=1, points=4)
def test_poll_wakes_a_sleeper_with_pollin_after_a_press_and_not_before(vm: VmLab) -> None:
    loaded(vm)
    p = vm.spawn("probe", "poll", helper=True)
    before = p.expect(r"^before ")
    p.expect("^open$")
    if before != "before 0 0":
        vm.fail(p.explain(f"poll(2) on a freshly opened /dev/button said `{before}` (ready count, revents); "
                          "nothing has happened yet, so it should report nothing (0)."))
    wait_asleep(vm, p, "poll")
    vm.button("press")
    r = vm.run(f"i=0; while [ $i -lt 200 ]; do grep -q '^after ' {p.out} && exit 0; usleep 10000; i=$((i+1)); done; "
               f"exit 1", timeout=10)
    if not r.ok:
        st = p.state()
        vm.fail(p.explain("A process was asleep in poll(2) with no timeout when the button was pressed, and it did "
                          f"not wake up (it is {st.describe() if st else 'gone'}): poll() must call poll_wait() on "
                          "the wait queue the interrupt handler wakes."))
    after = p.expect(r"^after ")
    m = re.match(r"after (-?\d+) (\S+)", after)
    if not m or m.group(1) != "1" or int(m.group(2), 16) != POLLIN_RDNORM:
        vm.fail(p.explain(f"After a press, poll(2) said `{after}`; expected 1 ready with POLLIN | POLLRDNORM "
                          f"({POLLIN_RDNORM:#x}): return EPOLLIN | EPOLLRDNORM when the ring has a record."))
    p.expect(r"^drained 1$", msg="poll(2) said POLLIN: one record should then be there to read.")
    empty = p.expect(r"^after-drain ")
    if empty != "after-drain 0 0":
        vm.fail(p.explain(f"After the record was read, the ring is empty, but poll(2) said `{empty}` (ready count, "
                          "revents): report EPOLLIN only while the ring holds a record."))


@graded(task=1, points=2)
def test_two_open_files_each_read_every_event(vm: VmLab) -> None:
    loaded(vm)
    a = vm.spawn("probe", "read", helper=True)
    b = vm.spawn("probe", "read", helper=True)
    a.expect("^open$")
    b.expect("^open$")
    vm.button("press")
    for p in (a, b):
        p.expect(r"^read ", msg="Two processes had /dev/button open when the button was pressed; "
                 "each should read the event (every open file has its own ring).")
        p.expect("^now ")
    ra, rb = records(a.output()), records(b.output())
    if len(ra) != 1 or len(rb) != 1 or ra[0][:2] != rb[0][:2] or ra[0][1] != 1:
        vm.fail(f"Two readers of one press read {ra} and {rb} (seq, pressed, time); expected the same "
                "single press record in both.")


@graded(task=1, points=2)
def test_seq_numbers_the_devices_events_whatever_file_reads_them(vm: VmLab) -> None:
    a = holding(vm)
    vm.button("press")
    b = vm.spawn("probe", "hold", helper=True)  # opened after the first event
    b.expect("^open$")
    vm.button("release")
    ra, rb = records(read_now(a)), records(read_now(b))
    if len(ra) != 2 or len(rb) != 1:
        vm.fail(f"A file open across a press and a release read {len(ra)} record(s), one opened between them read "
                f"{len(rb)}; expected 2 and 1. {edge_trouble(vm)}".rstrip())
    if rb[0][0] != ra[1][0]:
        vm.fail(f"The release was read as seq {ra[1][0]} by the file opened first and as seq {rb[0][0]} by the file "
                f"opened after the press: seq counts the device's interrupts (one counter for the device, not per "
                f"file), so that every reader can tell from a jump how many events it missed.")


def slab_kib(vm: VmLab) -> int:
    out = vm.sh("grep SUnreclaim /proc/meminfo", what="reading /proc/meminfo")
    return int(out.split()[1])


@graded(task=1, points=3)
def test_each_open_file_gets_a_reader_that_release_frees(vm: VmLab) -> None:
    loaded(vm)
    held, n = 1000, 400  # 1000 rings (~1 MiB): slabs left over from earlier tests are noise beside it
    per_open = max(1, ring_size(vm) * RECORD // 1024)  # KiB of ring each open file needs
    before = slab_kib(vm)
    m = vm.spawn("probe", "many", str(held), helper=True)
    m.expect(r"^opened ", timeout=30)
    grown = slab_kib(vm) - before
    m.signal("USR1")
    m.expect(r"^closed ", timeout=30)
    if grown < held * per_open // 2:
        vm.fail(f"With /dev/button open {held} times at once, the kernel used only {grown} KiB more (SUnreclaim in "
                f"/proc/meminfo); each open file needs its own reader with a ring of about {per_open} KiB: "
                "allocate it in open().")
    base = slab_kib(vm)
    vm.spawn("probe", "reopen", str(n), helper=True).expect(r"^reopened ", timeout=60)
    leaked = slab_kib(vm) - base
    if leaked > n * per_open // 4:
        vm.fail(f"Opening and closing /dev/button {n} times, one after the other, left {leaked} KiB more kernel "
                f"memory in use: release() must take the reader off the list and kfree() it.")


# --- Task 2: fasync: SIGIO to the owners ---------------------------------------------------------

def no_signal_cause(p: GuestProc) -> str:
    """Why a registered probe got no signal, from whether fasync_helper() set FASYNC on its file."""
    m = re.search(r"^registered fd \d+ fasync (\d)$", p.output(), re.M)
    if m and m.group(1) == "0":
        return (".fasync did not put the file on the list: after F_SETFL with O_ASYNC the file's FASYNC flag is "
                "still off, which only fasync_helper() sets. Call it from .fasync with the device's queue and "
                "return what it returns.")
    if m:
        return ("The file is on a fasync list (fasync_helper() set its FASYNC flag), but no signal came: does the "
                "interrupt handler call kill_fasync() on that very list (the device's, the one .fasync passes to "
                "fasync_helper()) after recording the event?")
    return "Check .fasync (fasync_helper()) and kill_fasync() in the interrupt handler."


def registered(vm: VmLab, *flags: str) -> GuestProc:
    loaded(vm)
    p = vm.spawn("probe", "sigio", *flags, helper=True)
    p.expect("^registered")
    return p


def signal_line(p: GuestProc) -> str:
    """The registered probe's `got ...` line, or "no-signal" when it sleeps on without one (its wait has no
    timeout: once it is seen asleep with no signal pending, none is coming)."""
    return p.expect(r"^got ", timeout=8, fail=False) or "no-signal"


@graded(task=2, points=3)
def test_a_press_sends_sigio_to_the_registered_owner(vm: VmLab) -> None:
    p = registered(vm)
    vm.button("press")
    got = signal_line(p)
    if not got.startswith("got SIGIO"):
        vm.fail(p.explain("A process had set F_SETOWN and O_ASYNC on /dev/button and waited for SIGIO when the "
                          "button was pressed: no SIGIO arrived. " + no_signal_cause(p)), signals=True)
    p.expect(r"^drained 1$", msg="After the SIGIO the press's record should be there to read.")


@graded(task=2, points=4)
def test_with_f_setsig_the_signal_carries_poll_in_the_fd_and_the_band(vm: VmLab) -> None:
    p = registered(vm, "-s")
    vm.button("press")
    got = signal_line(p)
    m = re.match(r"got (\S+) code (-?\d+) fd (-?\d+) myfd (-?\d+) band (\S+)", got)
    if not m or m.group(1) != "SIGRTMIN":
        vm.fail(p.explain("With F_SETSIG set to SIGRTMIN, a press should send SIGRTMIN (kill_fasync() sends "
                          "the file's F_SETSIG signal)."), signals=True)
    if m.group(2) != "1" or m.group(3) != m.group(4) or int(m.group(5), 16) != POLLIN_RDNORM:
        vm.fail(p.explain(f"The siginfo of the signal says si_code {m.group(2)}, si_fd {m.group(3)}, si_band "
                          f"{m.group(5)}; expected POLL_IN (1), the registered fd {m.group(4)} and POLLIN | "
                          f"POLLRDNORM ({POLLIN_RDNORM:#x}): pass POLL_IN (not POLLIN) as kill_fasync()'s band."))


# The interrupt handler's calls, in order: the function tracer, in a tracefs instance of its own (beside
# sigtrace's), on kill_fasync() and the spinlock entry points; only the calls the module makes in hard-IRQ
# context count (the `h` of the line's flags).
HANDLER_ORDER = "/sys/kernel/tracing/instances/wb-handler"
ORDER_FUNCS = ("kill_fasync", "_raw_spin_lock", "_raw_spin_lock_irq", "_raw_spin_lock_irqsave")
ORDER_LINE = re.compile(r"^\s*\S+-\d+\s+\[\d+\]\s+\S+\s+[\d.]+: (\w+) <-(\w+)", re.M)


def handler_calls(vm: VmLab, action: str) -> list[tuple[str, str]]:
    """`button ACTION`, and the calls of ORDER_FUNCS the module made in hard-IRQ context meanwhile, in order:
    (the function, the module's function that called it)."""
    vm.sh(f"mkdir -p {HANDLER_ORDER} && cd {HANDLER_ORDER} && echo > trace && echo > set_ftrace_filter && "
          f"for f in {' '.join(ORDER_FUNCS)}; do echo $f >> set_ftrace_filter; done && "
          "echo function > current_tracer && echo 1 > tracing_on", what="tracing the interrupt handler's calls")
    try:
        vm.button(action)
    finally:
        # Only the lines of hard-IRQ calls: an `h` in the third column of the line's flags.
        trace = vm.sh(f"cd {HANDLER_ORDER} && echo 0 > tracing_on && grep -E '^ *[^ ]+ +\\[[0-9]+\\] ..h' trace; "
                      "echo nop > current_tracer", what="reading the interrupt handler's calls")
    module = set(vm.module_symbols().values())
    return [(fn, parent) for fn, parent in ORDER_LINE.findall(trace) if parent in module]


@graded(task=2, points=2)
def test_the_signal_is_sent_after_the_event_is_recorded(vm: VmLab) -> None:
    registered(vm)  # a file on the fasync list: kill_fasync() has someone to signal
    if vm.irq_count() is None:
        vm.fail("/proc/interrupts has no IRQ for button_driver, so no interrupt handler can run at a press: "
                "probe() must request the button's IRQ (Task 1).")
    calls = handler_calls(vm, "press")
    signals = [i for i, (fn, _) in enumerate(calls) if fn == "kill_fasync"]
    locks = [i for i, (fn, _) in enumerate(calls) if fn != "kill_fasync"]
    if not signals:
        vm.fail("At a press, with a file registered for SIGIO, the interrupt handler called no kill_fasync() (the "
                "kernel's function tracer saw none from button_driver in hard-IRQ context): TODO 2.")
    if locks and signals[0] < locks[0]:
        (fn, caller), (lock, where) = calls[signals[0]], calls[locks[0]]
        vm.fail(f"At a press the interrupt handler signalled before it recorded the event: the kernel's function "
                f"tracer saw {fn}() called from {caller}() before {lock}() from {where}(), the lock under which the "
                "record goes into the rings. A program woken by the signal on another CPU can then read before the "
                "record is there and find nothing. Record the event in every ring first, then wake the readers "
                "and signal.")


@graded(task=2, points=4)
def test_two_registered_processes_both_get_the_signal(vm: VmLab) -> None:
    a = registered(vm)
    b = registered(vm)
    vm.button("press")
    for who, p in (("first", a), ("second", b)):
        got = signal_line(p)
        if not got.startswith("got SIGIO"):
            vm.fail(p.explain(f"Two processes were registered for SIGIO; the {who} got nothing from a press. "
                              + no_signal_cause(p) + " Every open file's entry belongs on the one list of the "
                              "device that kill_fasync() walks."), signals=True)


def no_more_signals(vm: VmLab, p: GuestProc, what: str, done: str) -> None:
    vm.button("press")
    got = signal_line(p)
    if not got.startswith("got SIGIO"):
        vm.fail(p.explain("No SIGIO arrived after a press while the file was registered."), signals=True)
    p.expect(f"^{done}$")
    vm.button("release")
    vm.button("click")
    early = re.search(r"^after got .*$", p.output(), re.M)  # a signal came, and the probe has said so
    if not early:
        p.signal("USR1")
    after = early.group(0) if early else p.expect(r"^after ")
    if after != "after nothing":
        vm.fail(p.explain(f"After the process {what}, presses still signalled it ({after})."))


@graded(task=2, points=4)
def test_clearing_o_async_stops_the_signals(vm: VmLab) -> None:
    p = registered(vm, "-o")
    no_more_signals(vm, p, "cleared O_ASYNC with F_SETFL", "cleared")


@graded(task=2, points=4)
def test_a_closed_file_gets_no_more_signals(vm: VmLab) -> None:
    p = registered(vm, "-c")
    no_more_signals(vm, p, "closed /dev/button", "closed")


@graded(task=2, points=4)
def test_rmmod_is_refused_while_the_device_is_open_and_the_driver_goes_on(vm: VmLab) -> None:
    p = registered(vm)
    r = vm.run("rmmod button_driver", timeout=20, what="rmmod button_driver while /dev/button is open")
    if r.ok:
        # It went: closing the file must not run code of the unloaded module.
        vm.button("press")
        p.kill()
        vm.run("sleep 0.2")
        vm.load_module()
        vm.fail("`rmmod button_driver` succeeded while a process had /dev/button open (nothing "
                "oopsed this time, but the open file's operations belong to the unloaded module): "
                "set .owner = THIS_MODULE in the file_operations.")
    vm.button("press")
    got = signal_line(p)
    if not got.startswith("got SIGIO"):
        vm.fail(p.explain("rmmod was refused (good), but the driver should go on working: the registered "
                          "process got no SIGIO from the next press."))


# --- Task 3: buttonwatch --------------------------------------------------------------------------

def watch(vm: VmLab, **kw) -> GuestProc:
    loaded(vm)
    w = vm.spawn("buttonwatch", **kw)
    w.expect("^ready", msg="buttonwatch prints a line starting with `ready` once F_SETOWN and O_ASYNC are set.")
    return w


O_ASYNC = 0o20000  # FASYNC in the file's flags (fdinfo)


def why_no_event(vm: VmLab, w: GuestProc) -> str:
    """Why buttonwatch reported nothing, from what the kernel shows of it (and of the driver)."""
    if w.status() is not None:
        return "buttonwatch had ended."
    files = w.open_files()
    if "/dev/button" not in files:
        return "buttonwatch does not have /dev/button open."
    if not files["/dev/button"] & O_ASYNC:
        return ("buttonwatch's descriptor of /dev/button does not have O_ASYNC, so no signal can come: turn it on "
                "with fcntl(fd, F_SETFL, flags | O_ASYNC), after F_SETOWN.")
    if not w.caught() >> (signal.SIGIO - 1) & 1:
        return "buttonwatch has no handler for SIGIO: install one with sigaction() before turning O_ASYNC on."
    rec = vm.witness.record([w.pid]) if vm.witness else None
    taken = rec.count(w.pid, "SIGIO").taken if rec else 0
    if taken:
        return (f"SIGIO reached buttonwatch (the kernel delivered it {taken} time(s) to its handler), but no event "
                f"line came out: look at the handler: does its read() get the records (the fd, the buffer, the "
                f"loop's condition), and does it print each one with reportEvent()?")
    p = registered(vm)
    vm.button("click")
    got = signal_line(p)
    if got.startswith("got"):
        return ("No SIGIO reached buttonwatch, although O_ASYNC is on, SIGIO has a handler, and the driver signals "
                "registered files (the grader's probe got one): buttonwatch's file has no owner. Call "
                "fcntl(fd, F_SETOWN, getpid()) before turning O_ASYNC on.")
    return ("No SIGIO reached buttonwatch, and none reached the grader's probe either: the driver sends no signal "
            "(Task 2: .fasync with fasync_helper(), kill_fasync() in the handler). buttonwatch's own set-up looks "
            "right: O_ASYNC is on and SIGIO has a handler.")


def expect_event(vm: VmLab, w: GuestProc, state: str) -> tuple[int, int]:
    line = w.expect(r"^event [0-9]+: ", fail=False)
    if not line:
        stdio = w.held_in_stdio("SIGIO", r"^event [0-9]+: ", "event N:", "Make each line with write(2), as "
                                "reportEvent()'s putStr() and putNum() helpers do.")
        if stdio:
            vm.fail(stdio)
        printed = re.search(r"^event [0-9]+: ", w.output(), re.M)
        why = ((edge_trouble(vm) or "It reported the events before this one, but not this one.") if printed
               else why_no_event(vm, w))
        vm.fail(w.explain(f"{why}\n  (The button was {state} while buttonwatch was running; it should report "
                          f"`event N: {state} at T ns` from its SIGIO handler.)"), signals=True)
    m = EVENT.match(line)
    if not m or m.group(2) != state:
        vm.fail(w.explain(f"The button was {state}; buttonwatch printed `{line}`, expected "
                          f"`event N: {state} at T ns`. {edge_trouble(vm)}".rstrip()))
    return int(m.group(1)), int(m.group(3))


@graded(task=3, points=3)
def test_buttonwatch_reports_a_press(vm: VmLab) -> None:
    w = watch(vm)
    vm.button("press")
    expect_event(vm, w, "pressed")


@graded(task=3, points=3)
def test_buttonwatch_reports_a_release(vm: VmLab) -> None:
    w = watch(vm)
    vm.button("press")
    seq1, t1 = expect_event(vm, w, "pressed")
    vm.button("release")
    seq2, t2 = expect_event(vm, w, "released")
    if seq2 != seq1 + 1 or t2 < t1:
        vm.fail(w.explain(f"Press then release were reported as events {seq1} and {seq2} at {t1} and {t2} ns: "
                          "expected consecutive numbers and increasing times."))


@graded(task=3, points=5)
def test_buttonwatch_reports_every_event_one_sigio_stands_for(vm: VmLab) -> None:
    w = watch(vm)
    w.signal("STOP")  # while it is stopped, the SIGIOs of six events merge into one pending SIGIO
    for _ in range(3):
        vm.button("click")
    w.signal("CONT")
    first = 0
    for i in range(6):
        line = w.expect(r"^event [0-9]+: ", fail=False)
        if not line:
            why = why_no_event(vm, w) if i == 0 else ""
            vm.fail(w.explain(why or (f"Six events happened while buttonwatch was stopped: their SIGIOs merged into "
                                      f"one (a standard signal is one pending bit, not a count), so the handler got "
                                      f"one signal for six records and must read until EAGAIN. It reported {i} of "
                                      f"them.")))
        m = EVENT.match(line)
        want = "pressed" if i % 2 == 0 else "released"
        first = first if i else (int(m.group(1)) if m else 0)
        if not m or int(m.group(1)) != first + i or m.group(2) != want:
            vm.fail(w.explain(f"Event {i + 1} of six should be reported as `event {first + i}: {want} at T ns`; "
                              f"buttonwatch printed `{line}`."))
    # Its last line: the events it reported in how many SIGIO deliveries, as the kernel counted them (1).
    w.signal("TERM")
    w.wait_exit()
    rec = vm.witness.record([w.pid]) if vm.witness else None
    taken = rec.count(w.pid, "SIGIO").taken if rec else 1
    want = f"6 events in {taken} SIGIO deliveries"
    if not re.search(rf"^{want}$", w.output(), re.M):
        vm.fail(w.explain(f"At SIGTERM buttonwatch should end with `{want}` (count every run of the SIGIO "
                          "handler: one signal stood for six events)."), signals=True)


@graded(task=3, points=3)
def test_buttonwatch_sets_the_owner_and_the_handler_before_o_async(vm: VmLab) -> None:
    w = watch(vm, preload=("asyncorder",))
    w.signal("TERM")
    w.wait_exit()
    text = w.output()
    found = re.findall(r"^asyncorder: (.+)$", text, re.M)
    opened = [f for f in found if f.startswith("open() was called with O_ASYNC")]
    if opened:
        vm.fail(w.explain(f"{opened[0]}. Open without it; a later F_SETFL cannot repair it (the flag is already "
                          "set, so F_SETFL sees no change and never calls the driver's .fasync): reopen."))
    if "O_ASYNC turned on" not in found:
        vm.fail(w.explain("buttonwatch never turned O_ASYNC on with fcntl(F_SETFL): without it the driver "
                          "sends it nothing."))
    wrong = [f for f in found if f != "O_ASYNC turned on"]
    if wrong:
        vm.fail(w.explain("When buttonwatch turned O_ASYNC on, a press at that moment would have been lost or "
                          "killed it: " + "; ".join(wrong) + ". Open with O_NONBLOCK, install the handler, set "
                          "the owner, and only then turn O_ASYNC on."))


def stop_with(vm: VmLab, sig: str) -> None:
    w = watch(vm)
    w.signal(sig)
    st = w.wait_exit()
    if st != 0:
        vm.fail(w.explain(f"After SIG{sig}, buttonwatch should close the device and exit with status 0."))
    w.expect(rf"^buttonwatch: SIG{sig}\b", msg=f"After SIG{sig} buttonwatch says which signal ended it.")


@graded(task=3, points=2)
def test_buttonwatch_exits_0_on_sigint(vm: VmLab) -> None:
    stop_with(vm, "INT")


@graded(task=3, points=2)
def test_buttonwatch_exits_0_on_sigterm(vm: VmLab) -> None:
    stop_with(vm, "TERM")


@graded(task=3, points=3)
def test_a_sigterm_just_before_the_wait_is_not_lost(vm: VmLab) -> None:
    loaded(vm)
    w = vm.spawn("buttonwatch", preload=("raceinject",),
                 env={"RACEINJECT_SIGNAL": "15", "RACEINJECT_PROGRAM": "buttonwatch"})
    w.expect("^ready")
    st = w.wait_exit(timeout=5)
    if st is None:
        state = w.state()
        fired = "raceinject: sent signal 15" in w.output()
        cause = ("SIGTERM's handler ran then, before the wait began, and the wait sleeps until a signal that "
                 "never comes. Keep SIGINT and SIGTERM blocked (with SIGIO) except inside sigsuspend(&orig), "
                 "which unblocks and waits in one step." if fired else "")
        vm.fail(w.explain("The grader sent SIGTERM exactly between buttonwatch's test of its flag and its wait "
                          f"(the harness raceinject does this at the first wait). It did not end: it is "
                          f"{state.describe() if state else 'gone'}. {cause}"))
    if st != 0:
        vm.fail(w.explain("buttonwatch got SIGTERM just before its wait; it should end cleanly with status 0."))


@graded(task=3, points=2)
def test_buttonwatch_s_handler_calls_only_async_signal_safe_functions(vm: VmLab) -> None:
    w = watch(vm)
    vm.button("click")
    vm.button("click")
    for _ in range(2):
        expect_event(vm, w, "pressed")
        expect_event(vm, w, "released")
    w.signal("TERM")
    w.wait_exit()
    found = w.sigsafe()
    if found:
        vm.fail(w.explain("buttonwatch's signal handlers call functions that are not async-signal-safe "
                          "(signal-safety(7)): print with write(2), or set a flag and print in main()."))


@graded(task=3, points=2)
def test_buttonwatch_s_sigio_handler_leaves_errno_as_it_found_it(vm: VmLab) -> None:
    w = watch(vm)
    vm.button("click")
    expect_event(vm, w, "pressed")
    expect_event(vm, w, "released")
    w.signal("TERM")
    w.wait_exit()
    found = w.sigsafe(errno_findings=True)
    if found:
        vm.fail(w.explain("buttonwatch's SIGIO handler returns with errno changed (its last read() set EAGAIN): the "
                          "code it interrupted may be about to read errno, and would read the handler's. Save errno "
                          "on entry and restore it before returning.\n" + "\n".join("    | " + f for f in found)))


# --- Task 4: a burst; a clean kernel log ---------------------------------------------------------

@graded(task=4, points=4)
def test_a_10000_press_burst_keeps_the_newest_ring_size_records_in_order(vm: VmLab) -> None:
    loaded(vm)
    size = ring_size(vm)
    irq0 = vm.irq_count()
    if irq0 is None:
        vm.fail("/proc/interrupts has no IRQ for button_driver: probe() must request the button's IRQ.")
    p = vm.spawn("probe", "burst", str(BURST), str(BURST_US), helper=True)
    p.expect(r"^burst-done$", timeout=60, msg=f"`button burst {BURST} {BURST_US}` (a click every {BURST_US} us) "
             "ran while the probe held /dev/button open without reading.")
    p.expect(r"^drained ", timeout=20)
    text = p.output()
    before = int(re.search(r"^before (\d+)", text, re.M).group(1))
    irqs = vm.irq_count() - irq0 - 2  # the click before the burst
    after = records(text.split("burst-done", 1)[1])
    want = min(irqs, size)
    if "partial" in text or "read-error" in text:
        vm.fail(p.explain("Reading the ring after the burst returned a partial record or an error."))
    edges = edge_trouble(vm)
    if edges:
        vm.fail(p.explain(f"`button burst {BURST} {BURST_US}` made {2 * BURST} edges. {edges}"))
    if len(after) != want:
        vm.fail(p.explain(f"The burst made {irqs} interrupts while the reader did not read; reading then "
                          f"gave {len(after)} records, expected {want} (BUTTON_RING_SIZE = {size}: the ring "
                          "keeps the newest ones, overwriting the oldest)."))
    seqs = [s for s, _, _ in after]
    last = before + irqs
    if seqs != list(range(last - want + 1, last + 1)):
        vm.fail(p.explain(f"After the burst the ring held seq {seqs[0]}..{seqs[-1]} "
                          f"({'not consecutive' if seqs != list(range(seqs[0], seqs[0] + len(seqs))) else 'consecutive'});"
                          f" expected the newest {want}: {last - want + 1}..{last} (one seq per interrupt, "
                          "the oldest overwritten when the ring is full)."))
    states = [pr for _, pr, _ in after]
    if any(a == b for a, b in zip(states, states[1:])) or states[-1] != 0:
        vm.fail(p.explain("After the burst the records do not alternate pressed/released ending with a "
                          "release: read the line's value in the handler (gpiod_get_value())."))
    times = [t for _, _, t in after]
    if times != sorted(times):
        vm.fail(p.explain("After the burst the records' times are not in increasing order."))


def _takes(calls, locks: set[int]) -> int:
    """Times the module took one of `locks` outside a hard interrupt."""
    return sum(c.count for c in calls if c.lock in locks and not c.flags & kcontext.HARDIRQ)


@graded(task=4, points=4)
def test_the_driver_locks_against_its_interrupt_and_never_sleeps_in_atomic_context(vm: VmLab) -> None:
    """The kernel counts, by context, every lock, sleep and allocation the driver makes (gradelib/kcontext.py)
    while a reader opens the device, two events arrive, it reads them and closes; then two readers read as fast
    as they can during a burst."""
    loaded(vm)
    vm.kcontext_start()
    try:
        s = vm.spawn("probe", "steps", helper=True)
        s.expect("^open$")
        opened = vm.kcontext_calls()
        vm.button("press")
        vm.button("release")
        events = vm.kcontext_calls()
        s.signal("USR1")
        s.expect("^drained ")
        read = vm.kcontext_calls()
        s.signal("USR1")
        s.expect("^closed$")
        closed = vm.kcontext_calls()
        s.signal("USR1")
        found = vm.kcontext_findings(closed)
    finally:
        vm.kcontext_stop()
    problems = list(found.problems)
    locks = found.irq_locks
    if not locks:
        problems.append("The interrupt handler took no spinlock while it added the events to the rings: the rings "
                        "and the list of readers are shared with open(), read() and release(), which run on "
                        "another stack at any moment; protect them with one spinlock.")
    else:
        for before, after, what in (([], opened, "open() adds the file's reader to the list the interrupt "
                                                 "handler walks"),
                                    (events, read, "read() takes records out of the ring the interrupt handler "
                                                   "fills"),
                                    (read, closed, "release() takes the reader off the list the interrupt handler "
                                                   "walks")):
            if _takes(after, locks) <= _takes(before, locks):
                problems.append(f"{what}, without taking the lock the handler takes: a handler running meanwhile "
                                f"(on another CPU, or interrupting it) sees half a change. Take it there too "
                                f"(spin_lock_irq()).")
    if problems:
        vm.fail("The kernel watched the driver's calls while a reader opened /dev/button, two events arrived, it "
                "read them and closed it:\n" + "\n".join("  - " + p for p in problems))
    readers = [vm.spawn("probe", "hammer", helper=True) for _ in range(2)]
    for r in readers:
        r.expect("^open$")
    vm.hint = "two programs were reading /dev/button as fast as they could during a burst of interrupts"
    vm.button("burst 3000 0", timeout=60)
    for r in readers:
        r.signal("USR1")
        line = r.expect(r"^(hammer|read-error|partial)", timeout=10)
        m = re.match(r"hammer (\d+) records, (\d+) out of order", line)
        if not m:
            vm.fail(r.explain(f"A reader reading one record at a time during a fast burst got `{line}`."))
        if int(m.group(1)) == 0 or int(m.group(2)) != 0:
            vm.fail(r.explain(f"A reader reading one record at a time during a fast burst read {m.group(1)} records, "
                              f"{m.group(2)} of them with a seq not above the one before it: the ring gave records "
                              f"out of order (does an overwrite of the oldest record move the head too?)."))
    vm.hint = ""


@graded(task=4, points=2)
def test_the_kernel_log_has_no_warning_bug_or_oops(vm: VmLab) -> None:
    loaded(vm)
    log = vm.run("dmesg", timeout=15, what="dmesg").stdout
    bad = [ln for ln in log.splitlines()
           if re.search(r"WARNING:|BUG:|Oops|kernel BUG|general protection|Call Trace", ln)]
    flags = vm.taint_names(vm.taint())
    if vm.troubles or bad or flags:  # in this VM, or in one the grader restarted during the lab
        shown = vm.troubles + bad[:12] + [f"taint flags now: {f}" for f in flags]
        vm.fail("During this lab the kernel logged a WARNING, BUG or Oops, stopped answering, or set a taint flag "
                "that says so (test: what):\n" + "\n".join("    | " + ln for t in shown for ln in t.splitlines()))
    if not vm.irq_count():
        vm.fail("button_driver has handled no interrupt yet (its IRQ is not in /proc/interrupts, or its count is "
                "0), so this lab's kernel log says nothing about it.")
