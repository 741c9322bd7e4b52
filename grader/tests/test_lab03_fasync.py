"""Lab 3: the fasync button driver (button_driver.ko) and buttonwatch, graded in the VM.

One boot for the whole lab (the `vm` fixture, gradelib/vmlab.py): the module is
built with W=1, the board (driver/wb_board.ko) is loaded, and every test
presses the button with `button`, which returns once the interrupt handler
has run.  Programs print a line when they are set up (buttonwatch: `ready`;
the grader's probe: `open`, `registered`), and the tests wait for lines, never
for time.

The probe (grader/guest/probe.c) is the grader's own program: it uses the device the
way the chapter describes and prints what it saw, so a test can tell the
driver's part from buttonwatch's.
"""
from __future__ import annotations

import re

import pytest

from gradelib.lab import Program
from gradelib.vmlab import VmLab, VmLabSpec

LAB = VmLabSpec(
    3, "03-fasync-button",
    programs={"buttonwatch": Program(["buttonwatch.c"], sanitize=False)},
    module="button_driver",
    helpers=("probe",),
    harness=("raceinject",),
    devices=("/dev/button",),
)

EVENT = re.compile(r"^event (\d+): (pressed|released) at (\d+) ns$")
REC = re.compile(r"^rec (\d+) (\d) (\d+)$", re.M)
BURST = 10000  # clicks: 2 * BURST events
BURST_US = 2  # one click every 2 us: as fast as the board goes


def graded(task: int, points: int):
    return pytest.mark.graded(task=task, points=points)


def records(text: str) -> list[tuple[int, int, int]]:
    return [(int(s), int(p), int(t)) for s, p, t in REC.findall(text)]


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


# --- prerequisites --------------------------------------------------------------

@pytest.mark.prereq
def test_the_module_builds_with_no_warnings(vm_lab: VmLab) -> None:
    if vm_lab.kbuild is None:
        pytest.fail(vm_lab.broken or "the module was not built", pytrace=False)
    b = vm_lab.kbuild
    if not b.ok:
        pytest.fail("button_driver.ko does not build against the VM kernel's headers (make in "
                    "labs/03-fasync-button shows the same). The compiler's first errors:\n"
                    + "\n".join("    | " + ln for ln in b.summary(15).splitlines()), pytrace=False)
    if b.warnings:
        pytest.fail("button_driver.c builds, but with warnings (the grader builds with W=1, like `make`); "
                    "fix them:\n" + "\n".join("    | " + w for w in b.warnings[:10]), pytrace=False)


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

@graded(task=1, points=2)
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


@graded(task=1, points=2)
def test_a_blocking_read_returns_the_press_as_one_record(vm: VmLab) -> None:
    loaded(vm)
    p = vm.spawn("probe", "read", helper=True)
    p.expect("^open$")
    vm.button("press")
    line = p.expect(r"^(read|read-error) ", msg="A reader was blocked in read(2) on /dev/button when the "
                    "button was pressed.")
    if line.startswith("read-error"):
        vm.fail(p.explain(f"read(2) of /dev/button failed after a press ({line[11:]}): it should "
                          "sleep until an event is in the ring, then return it."))
    p.expect("^now ")
    text = p.output()
    n = int(re.search(r"^read (\d+)", text, re.M).group(1))
    recs = records(text)
    now = int(re.search(r"^now (\d+)", text, re.M).group(1))
    if n != 16:
        vm.fail(p.explain(f"After one press, read(2) with room for 4 records returned {n} bytes; "
                          "expected exactly one struct button_event (16 bytes)."))
    seq, pressed, t = recs[0]
    if pressed != 1:
        vm.fail(p.explain(f"The record of a press says pressed={pressed}; expected 1 (gpiod_get_value() is "
                          "1 while the button is down: the line is active low)."))
    if not (0 < t <= now and now - t < 30_000_000_000):
        vm.fail(p.explain(f"The record's time_ns {t} is not a CLOCK_MONOTONIC time in the last seconds "
                          f"(now: {now}): use ktime_get_ns() in the handler."))
    if seq < 1:
        vm.fail(p.explain("The record's seq is 0: number the events from 1."))


@graded(task=1, points=2)
def test_a_release_is_read_as_a_released_record_with_the_next_seq(vm: VmLab) -> None:
    loaded(vm)
    s = vm.spawn("probe", "hold", helper=True)
    s.expect("^open$")
    vm.button("press")
    vm.button("release")
    s.signal("USR1")
    s.expect("^drained ", msg="A reader held /dev/button open across a press and a release, then read it.")
    got = records(s.output())
    if len(got) != 2:
        vm.fail(s.explain(f"A reader open across a press and a release read {len(got)} record(s); "
                          "expected 2: one per interrupt, each whole."))
    (s1, p1, t1), (s2, p2, t2) = got
    if (p1, p2) != (1, 0):
        vm.fail(s.explain(f"Press then release gave pressed={p1} then pressed={p2}; expected 1 then 0."))
    if s2 != s1 + 1:
        vm.fail(s.explain(f"Press then release gave seq {s1} then {s2}; expected consecutive numbers."))
    if t2 < t1:
        vm.fail(s.explain(f"The release's time_ns {t2} is before the press's {t1}."))


@graded(task=1, points=1)
def test_a_nonblocking_read_of_an_empty_device_fails_with_eagain(vm: VmLab) -> None:
    loaded(vm)
    p = vm.spawn("probe", "nonblock", helper=True)
    line = p.expect(r"^read ")
    if line != "read -1 EAGAIN":
        vm.fail(p.explain(f"read(2) with O_NONBLOCK on an empty /dev/button gave `{line}`; expected -1 with "
                          "errno EAGAIN (check file->f_flags & O_NONBLOCK before sleeping)."))


@graded(task=1, points=2)
def test_poll_reports_pollin_after_a_press_and_not_before(vm: VmLab) -> None:
    loaded(vm)
    p = vm.spawn("probe", "poll", helper=True)
    before = p.expect(r"^before ")
    p.expect("^open$")
    if before != "before 0 0":
        vm.fail(p.explain(f"poll(2) on a freshly opened /dev/button said `{before}` (ready count, revents); "
                          "nothing has happened yet, so it should report nothing (0)."))
    vm.button("press")
    after = p.expect(r"^after ", msg="A process was sleeping in poll(2) for POLLIN when the button was pressed.")
    m = re.match(r"after (-?\d+) (\S+)", after)
    if not m or m.group(1) != "1" or not int(m.group(2), 16) & 0x1:
        vm.fail(p.explain(f"After a press, poll(2) said `{after}`; expected 1 ready with POLLIN. Call "
                          "poll_wait() on the queue the handler wakes, and return EPOLLIN | EPOLLRDNORM "
                          "when the ring has a record."))
    p.expect(r"^drained 1$", msg="poll(2) said POLLIN: one record should then be there to read.")


@graded(task=1, points=1)
def test_two_open_files_each_read_every_event(vm: VmLab) -> None:
    loaded(vm)
    a = vm.spawn("probe", "read", helper=True)
    b = vm.spawn("probe", "read", helper=True)
    a.expect("^open$")
    b.expect("^open$")
    vm.button("press")
    for p in (a, b):
        p.expect(r"^(read|read-error)", msg="Two processes had /dev/button open when the button was pressed; "
                 "each should read the event (every open file has its own ring).")
        p.expect("^now ")
    ra, rb = records(a.output()), records(b.output())
    if len(ra) != 1 or len(rb) != 1 or ra[0][:2] != rb[0][:2] or ra[0][1] != 1:
        vm.fail(f"Two readers of one press read {ra} and {rb} (seq, pressed, time); expected the same "
                "single press record in both.")


# --- Task 2: fasync: SIGIO to the owners ---------------------------------------------------------

@graded(task=2, points=2)
def test_a_press_sends_sigio_to_the_registered_owner(vm: VmLab) -> None:
    loaded(vm)
    p = vm.spawn("probe", "sigio", helper=True)
    p.expect("^registered")
    vm.button("press")
    got = p.expect(r"^(got|no-signal)", timeout=8, msg="A process had set F_SETOWN and O_ASYNC on /dev/button "
                   "and waited for SIGIO when the button was pressed.")
    if not got.startswith("got SIGIO"):
        vm.fail(p.explain("No SIGIO arrived after a press. Implement .fasync with fasync_helper() and call "
                          "kill_fasync(&queue, SIGIO, POLL_IN) in the interrupt handler."), signals=True)
    p.expect(r"^drained 1$", msg="After the SIGIO the press's record should be there to read.")


@graded(task=2, points=1)
def test_with_f_setsig_the_signal_carries_poll_in_and_the_fd(vm: VmLab) -> None:
    loaded(vm)
    p = vm.spawn("probe", "sigio", "-s", helper=True)
    p.expect("^registered")
    vm.button("press")
    got = p.expect(r"^(got|no-signal)", timeout=8)
    m = re.match(r"got (\S+) code (-?\d+) fd (-?\d+) myfd (-?\d+)", got)
    if not m or m.group(1) != "SIGRTMIN":
        vm.fail(p.explain("With F_SETSIG set to SIGRTMIN, a press should send SIGRTMIN (kill_fasync() sends "
                          "the file's F_SETSIG signal)."), signals=True)
    if m.group(2) != "1" or m.group(3) != m.group(4):
        vm.fail(p.explain(f"The siginfo of the signal says si_code {m.group(2)} and si_fd {m.group(3)}; "
                          f"expected POLL_IN (1) and the registered fd {m.group(4)}: pass POLL_IN as "
                          "kill_fasync()'s band."))


@graded(task=2, points=2)
def test_two_registered_processes_both_get_the_signal(vm: VmLab) -> None:
    loaded(vm)
    a = vm.spawn("probe", "sigio", helper=True)
    b = vm.spawn("probe", "sigio", helper=True)
    a.expect("^registered")
    b.expect("^registered")
    vm.button("press")
    for who, p in (("first", a), ("second", b)):
        got = p.expect(r"^(got|no-signal)", timeout=8)
        if not got.startswith("got SIGIO"):
            vm.fail(p.explain(f"Two processes were registered for SIGIO; the {who} got nothing from a press. "
                              "One fasync list for the device, with an entry per file: fasync_helper() "
                              "with the same &queue for every file."), signals=True)


@graded(task=2, points=2)
def test_a_closed_file_gets_no_more_signals(vm: VmLab) -> None:
    loaded(vm)
    p = vm.spawn("probe", "sigio", "-c", helper=True)
    p.expect("^registered")
    vm.button("press")
    got = p.expect(r"^(got|no-signal)", timeout=8)
    if not got.startswith("got SIGIO"):
        vm.fail(p.explain("No SIGIO arrived after a press while the file was registered."), signals=True)
    p.expect("^closed$")
    vm.button("release")
    vm.button("click")
    p.signal("USR1")
    after = p.expect(r"^after-close ")
    if after != "after-close nothing":
        vm.fail(p.explain(f"After the process closed /dev/button, presses still signalled it ({after}): "
                          "the closed file must be off the fasync list."))


@graded(task=2, points=1)
def test_rmmod_while_the_device_is_open_is_refused_or_safe(vm: VmLab) -> None:
    loaded(vm)
    p = vm.spawn("probe", "sigio", helper=True)
    p.expect("^registered")
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
    got = p.expect(r"^(got|no-signal)", timeout=8)
    if not got.startswith("got SIGIO"):
        vm.fail(p.explain("rmmod was refused (good), but the driver should go on working: the registered "
                          "process got no SIGIO from the next press."))


# --- Task 3: buttonwatch --------------------------------------------------------------------------

def watch(vm: VmLab):
    loaded(vm)
    w = vm.spawn("buttonwatch")
    w.expect("^ready", msg="buttonwatch prints a line starting with `ready` once F_SETOWN and O_ASYNC are set.")
    return w


def expect_event(vm: VmLab, w, state: str) -> tuple[int, int]:
    line = w.expect(r"^event [0-9]+: ", msg=f"The button was {state} while buttonwatch was running; it should "
                    f"report `event N: {state} at T ns` from its SIGIO handler.")
    m = EVENT.match(line)
    if not m or m.group(2) != state:
        vm.fail(w.explain(f"The button was {state}; buttonwatch printed `{line}`, expected "
                          f"`event N: {state} at T ns`."))
    return int(m.group(1)), int(m.group(3))


@graded(task=3, points=2)
def test_buttonwatch_reports_a_press(vm: VmLab) -> None:
    w = watch(vm)
    vm.button("press")
    expect_event(vm, w, "pressed")


@graded(task=3, points=2)
def test_buttonwatch_reports_a_release(vm: VmLab) -> None:
    w = watch(vm)
    vm.button("press")
    seq1, t1 = expect_event(vm, w, "pressed")
    vm.button("release")
    seq2, t2 = expect_event(vm, w, "released")
    if seq2 != seq1 + 1 or t2 < t1:
        vm.fail(w.explain(f"Press then release were reported as events {seq1} and {seq2} at {t1} and {t2} ns: "
                          "expected consecutive numbers and increasing times."))


def stop_with(vm: VmLab, sig: str) -> None:
    w = watch(vm)
    vm.button("click")
    expect_event(vm, w, "pressed")
    expect_event(vm, w, "released")
    w.signal(sig)
    st = w.wait_exit()
    if st != 0:
        vm.fail(w.explain(f"After SIG{sig}, buttonwatch should close the device and exit with status 0."))
    # Its last line: the events it reported, in how many SIGIO deliveries (the kernel's count).
    m = re.search(r"^(\d+) events in (\d+) SIGIO deliveries$", w.output(), re.M)
    rec = vm.witness.record([w.pid]) if vm.witness else None
    taken = rec.count(w.pid, "SIGIO").taken if rec else None
    if not m or int(m.group(1)) != 2 or (taken is not None and int(m.group(2)) != taken):
        vm.fail(w.explain(f"buttonwatch's last line should say how many events it reported in how many SIGIO "
                          f"deliveries: `2 events in {taken if taken is not None else 'M'} SIGIO deliveries` "
                          "after one click (count every run of the SIGIO handler)."), signals=True)


@graded(task=3, points=1)
def test_buttonwatch_exits_0_on_sigint(vm: VmLab) -> None:
    stop_with(vm, "INT")


@graded(task=3, points=1)
def test_buttonwatch_exits_0_on_sigterm(vm: VmLab) -> None:
    stop_with(vm, "TERM")


@graded(task=3, points=1)
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


@graded(task=3, points=1)
def test_presses_after_buttonwatch_exits_reach_nobody_and_oops_nothing(vm: VmLab) -> None:
    w = watch(vm)
    vm.button("press")
    expect_event(vm, w, "pressed")
    w.signal("INT")
    if w.wait_exit() != 0:
        vm.fail(w.explain("buttonwatch did not exit with status 0 after SIGINT."))
    vm.button("release")
    vm.button("click")
    p = vm.spawn("probe", "sigio", helper=True)
    p.expect("^registered")
    vm.button("press")
    got = p.expect(r"^(got|no-signal)", timeout=8)
    if not got.startswith("got SIGIO"):
        vm.fail(p.explain("After buttonwatch exited, a new registered process got no SIGIO from a press."),
                signals=True)


# --- Task 4: a burst; a clean kernel log ---------------------------------------------------------

@graded(task=4, points=3)
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


@graded(task=4, points=2)
def test_the_kernel_log_has_no_warning_bug_or_oops(vm: VmLab) -> None:
    loaded(vm)
    n = vm.irq_count()
    if not n:
        vm.fail("button_driver has handled no interrupt yet (its IRQ is not in /proc/interrupts, or "
                "its count is 0), so this lab's kernel log says nothing about it.")
    log = vm.run("dmesg", timeout=15, what="dmesg").stdout
    bad = [ln for ln in log.splitlines()
           if re.search(r"WARNING:|BUG:|Oops|kernel BUG|general protection|Call Trace", ln)]
    if vm.warnings or bad:
        shown = "\n".join(bad[:12]) if bad else vm.warnings[0]
        vm.fail("During this lab the kernel logged a WARNING, BUG or Oops:\n"
                + "\n".join("    | " + ln for ln in shown.splitlines()))
