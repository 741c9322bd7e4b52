"""The simulated button board (driver/) in the lab VM.

driver/test/wb_test.ko is a consumer written the way the learner's driver
will be: a platform driver for "wb-button" that takes the line with
gpiod_get(dev, "button", GPIOD_IN), requests gpiod_to_irq() with the trigger
a test asks for (/sys/kernel/debug/wb-test/ctl) and counts, in its hard-IRQ
handler, the runs, the logical value it reads and whether it really ran in
hard-IRQ context with interrupts off (/sys/kernel/debug/wb-test/stats).

Nothing here sleeps and hopes: a write to the board's ctl file (what the
`button` command does) returns only after the interrupt of its last edge has
been handled, so every count is final when the command returns.

One VM is booted for the module (about 2 s under TCG). The leak test boots
its own with slub_debug=U: Debian's kernel has no kmemleak
(CONFIG_DEBUG_KMEMLEAK is not set), but with SLUB's user tracking every live
slab object is listed with the code that allocated it.
"""
from __future__ import annotations

import re
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from gradelib.cli import REPO
from vm import fetch
from vm.machine import Machine

BOARD = "/sys/kernel/debug/wb-board/line0"
TEST = "/sys/kernel/debug/wb-test"
BUTTON = "/lab/button"
LOAD = "insmod /lab/wb_board.ko && insmod /lab/wb_test.ko"
UNLOAD = "rmmod wb_test && rmmod wb_board"


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    fetch.ensure(quiet=True)
    out = tmp_path_factory.mktemp("driver")
    res = subprocess.run(["make", "-C", str(REPO / "driver"), f"OUT={out}", "W=1"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    return res, out


def board_files(build) -> dict[str, Path]:
    res, out = build
    assert res.returncode == 0, "make -C driver failed:\n" + res.stdout[-3000:]
    return {"/lab/wb_board.ko": out / "wb_board.ko", "/lab/wb_test.ko": out / "test" / "wb_test.ko",
            "/lab/button": out / "button"}


@pytest.fixture(scope="module")
def vm(build):
    with Machine(files=board_files(build)) as m:
        m.check(LOAD)
        yield m


@pytest.fixture
def board(vm: Machine):
    """Both modules loaded, no IRQ requested, button released, counters zero."""
    if "wb_board" not in vm.check("lsmod"):
        vm.check("insmod /lab/wb_board.ko")
    if "wb_test" not in vm.check("lsmod"):
        vm.check("insmod /lab/wb_test.ko")
    vm.check(f"echo free > {TEST}/ctl && echo reset > {TEST}/ctl && {BUTTON} stop && "
             f"{BUTTON} bounce 0 && {BUTTON} release && {BUTTON} reset")
    yield vm
    assert vm.oops() is None, vm.oops()


def stats(vm: Machine, path: str) -> dict[str, int | str]:
    out = {}
    for line in vm.check(f"cat {path}").splitlines():
        key, _, val = line.partition(" ")
        out[key] = int(val) if re.fullmatch(r"-?\d+", val) else val
    return out


def line0(vm: Machine) -> dict:
    return stats(vm, f"{BOARD}/stats")


def consumer(vm: Machine) -> dict:
    return stats(vm, f"{TEST}/stats")


def request(vm: Machine, trigger: str) -> None:
    vm.check(f"echo request {trigger} > {TEST}/ctl")


def proc_interrupts(vm: Machine) -> int:
    """The consumer's row in /proc/interrupts: its count (1 vCPU)."""
    rows = [l for l in vm.check("cat /proc/interrupts").splitlines() if l.rstrip().endswith(" wb_test")]
    assert len(rows) == 1, "no single wb_test row in /proc/interrupts: %r" % rows
    m = re.match(r"\s*\d+:\s+(\d+)\s+wb-gpio\s+0\s+wb_test$", rows[0].rstrip())
    assert m, f"unexpected /proc/interrupts row: {rows[0]!r}"
    return int(m.group(1))


# -- building and loading

def test_the_board_builds_warning_free_at_w1(build) -> None:
    res, out = build
    assert res.returncode == 0, res.stdout[-3000:]
    warnings = [l for l in res.stdout.splitlines() if "warning:" in l or l.startswith("WARNING")]
    assert not warnings, "\n".join(warnings)
    for f in ("wb_board.ko", "test/wb_test.ko", "button"):
        assert (out / f).is_file(), f"make did not produce {f}"


def test_loading_registers_the_chip_and_binds_the_button_line_active_low(board: Machine) -> None:
    gpio = board.check("cat /sys/kernel/debug/gpio")
    assert re.search(r"parent: platform/wb-gpio, wb-gpio:", gpio), gpio
    assert re.search(r"\(WB_BUTTON\s+\|button\s+\) in\s+hi .*ACTIVE LOW", gpio), gpio
    c = consumer(board)
    assert c["irq"] > 0 and c["value"] == 0 and c["raw"] == 1, c


# -- edges, triggers, values

def test_a_press_runs_the_consumers_handler_in_hard_irq_context(board: Machine) -> None:
    request(board, "falling")
    before = proc_interrupts(board)
    board.check(f"{BUTTON} press")
    c = consumer(board)
    assert c["count"] == 1, c
    assert c["not_hardirq"] == 0, "the handler ran outside hard-IRQ context"
    assert c["irqs_on"] == 0, "the handler ran with interrupts enabled"
    assert proc_interrupts(board) == before + 1, "/proc/interrupts did not count the press under wb_test"


@pytest.mark.parametrize("trigger, after_press, after_release", [
    ("falling", 1, 1),
    ("rising", 0, 1),
    ("both", 1, 2),
    ("none", 0, 0),
])
def test_the_trigger_selects_the_edges(board: Machine, trigger: str, after_press: int, after_release: int) -> None:
    # Active low: a press is a falling edge, a release a rising one. "none"
    # requests without trigger flags; the line was set up with no trigger.
    vm = board
    if trigger == "none":
        vm.check("rmmod wb_test && rmmod wb_board && insmod /lab/wb_board.ko && insmod /lab/wb_test.ko")
    request(vm, trigger)
    vm.check(f"{BUTTON} press")
    assert consumer(vm)["count"] == after_press, f"{trigger}: interrupts after a press"
    vm.check(f"{BUTTON} release")
    assert consumer(vm)["count"] == after_release, f"{trigger}: interrupts after press+release"
    b = line0(vm)
    assert b["edges"] == 2 and b["delivered"] == after_release and b["ignored"] == 2 - after_release, b


def test_the_handler_reads_1_when_pressed_and_0_when_released(board: Machine) -> None:
    request(board, "both")
    board.check(f"{BUTTON} press")
    c = consumer(board)
    assert (c["pressed"], c["released"], c["value"], c["raw"]) == (1, 0, 1, 0), c
    board.check(f"{BUTTON} release")
    c = consumer(board)
    assert (c["pressed"], c["released"], c["value"], c["raw"]) == (1, 1, 0, 1), c
    assert c["bad_value"] == 0


def test_level_triggers_are_refused(board: Machine) -> None:
    for trigger in ("level-low", "level-high"):
        r = board.run(f"echo request {trigger} > {TEST}/ctl")
        assert r.status != 0 and "Invalid argument" in r.stderr, f"{trigger}: {r.describe()}"
    assert consumer(board)["requested"] == 0


# -- bursts, bounce, merging

def test_a_burst_of_10000_presses_counts_exactly_within_seconds(board: Machine) -> None:
    request(board, "both")
    before = proc_interrupts(board)
    t0 = time.monotonic()
    board.check(f"{BUTTON} burst 10000 20", timeout=60)
    took = time.monotonic() - t0
    b, c = line0(board), consumer(board)
    want = {"edges": 20000, "falling": 10000, "rising": 10000, "irqs": 20000, "delivered": 20000,
            "deferred": 0, "coalesced": 0, "ignored": 0, "last_job_edges": 20000, "busy": 0, "level": 1}
    assert {k: b[k] for k in want} == want
    assert (c["count"], c["pressed"], c["released"]) == (20000, 10000, 10000), c
    assert proc_interrupts(board) - before == 20000
    assert took < 15, f"10,000 presses took {took:.1f} s: are hrtimers high resolution?"


def test_a_burst_keeps_its_interval(board: Machine) -> None:
    # 20 presses every 2 ms, each released 1 ms later: the last edge comes
    # 39 ms after the first, never sooner.
    request(board, "both")
    board.check(f"{BUTTON} burst 20 2000")
    b = line0(board)
    assert b["edges"] == 40 and consumer(board)["count"] == 40
    assert 39_000_000 <= b["last_job_ns"] < 2_000_000_000, b["last_job_ns"]


def test_a_burst_from_a_held_button_starts_with_its_release(board: Machine) -> None:
    request(board, "both")
    board.check(f"{BUTTON} press")
    board.check(f"{BUTTON} burst 5 0")
    b = line0(board)
    assert (b["edges"], b["last_job_edges"], b["level"]) == (10, 9, 1), b


def test_bounce_adds_2k_edges_to_every_press_and_release(board: Machine) -> None:
    request(board, "both")
    board.check(f"{BUTTON} bounce 3 50 && {BUTTON} click")
    b = line0(board)
    assert (b["edges"], b["falling"], b["rising"]) == (14, 7, 7), b
    assert consumer(board)["count"] == 14
    board.check(f"{BUTTON} reset && echo reset > {TEST}/ctl && {BUTTON} bounce 2 10 && {BUTTON} burst 5 0")
    assert line0(board)["edges"] == 5 * 2 * (1 + 2 * 2)
    assert consumer(board)["count"] == 50
    board.check(f"{BUTTON} bounce 0 && {BUTTON} reset && {BUTTON} click")
    assert line0(board)["edges"] == 2


def test_edges_while_the_irq_is_disabled_merge_into_one_interrupt(board: Machine) -> None:
    request(board, "both")
    board.check(f"echo disable > {TEST}/ctl && {BUTTON} burst 100 0")
    b = line0(board)
    assert consumer(board)["count"] == 0
    assert (b["edges"], b["delivered"], b["deferred"], b["pending"]) == (200, 0, 1, 1), b
    board.check(f"echo enable > {TEST}/ctl")
    b = line0(board)
    assert consumer(board)["count"] == 1, "enable_irq() should replay exactly one interrupt"
    assert (b["delivered"], b["coalesced"], b["replays"], b["pending"]) == (1, 199, 1, 0), b
    assert b["edges"] == b["ignored"] + b["delivered"] + b["coalesced"] + b["dropped"]
    board.check(f"{BUTTON} click")
    assert consumer(board)["count"] == 3, "the line does not interrupt normally after enable"


# -- jobs

def test_a_job_started_with_n_runs_on_and_blocks_other_commands(board: Machine) -> None:
    request(board, "both")
    board.check(f"{BUTTON} -n burst 1000 1000")
    assert line0(board)["busy"] == 1
    r = board.run(f"{BUTTON} press")
    assert r.status == 1 and "a job is running" in r.stderr, r.describe()
    board.check(f"{BUTTON} wait")
    b = line0(board)
    assert (b["busy"], b["edges"]) == (0, 2000), b
    assert consumer(board)["count"] == 2000


def test_a_signal_stops_the_burst_it_interrupts(board: Machine) -> None:
    r = board.run(f"timeout -s INT 1 {BUTTON} burst 1000000 100", timeout=20)
    assert not r.ok, "a burst of 1,000,000 presses at 100 us ended within a second: " + r.describe()
    b = line0(board)
    assert b["busy"] == 0 and 0 < b["edges"] < 2_000_000, b
    board.check(f"{BUTTON} click")  # the line is free again


# -- unloading

def test_the_board_cannot_be_unloaded_while_the_consumer_holds_the_line(board: Machine) -> None:
    request(board, "falling")
    r = board.run("rmmod wb_board")
    assert r.status != 0, "rmmod wb_board succeeded under a consumer that holds its line"
    assert "wb_board" in board.check("lsmod")
    board.check(f"{BUTTON} press")
    assert consumer(board)["count"] == 1


def test_load_and_unload_20_times_is_clean(board: Machine) -> None:
    board.check(UNLOAD)
    cycle = (f"{LOAD} && echo request both > {TEST}/ctl && {BUTTON} burst 10 0 && "
             f"cat {BOARD}/stats {TEST}/stats > /dev/null && {UNLOAD}")
    board.check(f"dmesg -c > /dev/null; for i in $(seq 20); do {cycle} || exit 1; done", timeout=60)
    log = board.check("dmesg")
    ranges = re.findall(r"wb-gpio: 4 lines, GPIOs (\d+-\d+)", log)
    assert len(ranges) == 20 and len(set(ranges)) == 1, \
        f"the GPIO numbers moved ({set(ranges)}): a chip was not given back"
    irqs = set(re.findall(r"button on IRQ (\d+)", log))
    assert len(irqs) == 1, f"the button's IRQ number changed across loads ({irqs}): descriptors leak"
    for bad in ("already present", "WARNING", "BUG", "leak", "refcount", "corruption"):
        assert bad not in log, f"{bad!r} in the kernel log:\n{log[-2000:]}"
    left = board.check("cat /proc/interrupts; ls /sys/bus/platform/devices /sys/bus/platform/drivers; "
                       "cat /sys/kernel/debug/gpio; ls /sys/kernel/debug")
    assert not re.search(r"wb[-_]", left), "left behind after unloading:\n" + left


SNAPSHOT = ("for f in /sys/kernel/debug/slab/kmalloc-*/alloc_traces "
            "/sys/kernel/debug/slab/kernfs_node_cache/alloc_traces; do "
            "c=${f%/alloc_traces}; awk -v c=${c##*/} '$1 ~ /^[0-9]+$/ {print c, $2, $1}' $f; done")


def live_objects(vm: Machine) -> Counter:
    """Live slab objects by (cache, allocating function)."""
    count: Counter = Counter()
    for line in vm.check(SNAPSHOT, timeout=60).splitlines():
        cache, site, n = line.split()
        count[(cache, site.split("+")[0])] += int(n)
    return count


def test_load_and_unload_20_times_leaves_no_slab_object_behind(build) -> None:
    n = 20
    cycle = (f"{LOAD} && echo request both > {TEST}/ctl && {BUTTON} burst 10 0 && "
             f"echo disable > {TEST}/ctl && {BUTTON} click && {UNLOAD}")
    with Machine(files=board_files(build), cmdline="slub_debug=U") as m:
        m.check(f"for i in 1 2; do {cycle} || exit 1; done", timeout=60)
        before = live_objects(m)
        m.check(f"for i in $(seq {n}); do {cycle} || exit 1; done", timeout=120)
        after = live_objects(m)
        # debugfs_file_get: the first read of each alloc_traces file itself.
        grown = {k: after[k] - before[k] for k in after
                 if after[k] - before[k] >= n and k[1] != "debugfs_file_get"}
        assert not grown, f"live objects grew by one or more per load/unload: {grown}"
        orphans = {k: v for k, v in after.items() if k[1].startswith("0x")}
        assert not orphans, f"objects allocated by code that is no longer loaded: {orphans}"
        assert m.oops() is None, m.oops()


# -- the button command

def test_button_help_prints_the_commands_and_exits_0(board: Machine) -> None:
    r = board.run(f"{BUTTON} --help")
    assert r.status == 0 and r.stderr == "", r.describe()
    for word in ("press", "release", "click", "burst N INTERVAL_US", "bounce K", "stats", "2*N edges"):
        assert word in r.stdout, f"--help does not mention {word!r}"


@pytest.mark.parametrize("args", ["", "frob", "burst", "burst 10", "burst x 10", "burst 0 10",
                                  "press 1 2", "bounce -1", "click 0", "-q press"])
def test_button_with_bad_arguments_prints_the_usage_and_exits_2(board: Machine, args: str) -> None:
    r = board.run(f"{BUTTON} {args}")
    assert r.status == 2 and "Usage: button" in r.stderr and r.stdout == "", r.describe()
    assert line0(board)["edges"] == 0


def test_button_stats_shows_a_row_per_line(board: Machine) -> None:
    request(board, "falling")
    board.check(f"{BUTTON} click")
    out = board.check(f"{BUTTON} stats").splitlines()
    head = out[0].split()
    assert head[:5] == ["line", "level", "busy", "trigger", "edges"] and "delivered" in head, out
    assert len(out) == 1 + 4
    row = dict(zip(head, out[1].split()))
    assert (row["line"], row["trigger"], row["edges"], row["delivered"]) == ("0", "falling", "2", "1"), row


# -- the switches, and a device taken away while it is in use

def test_the_switches_are_devices_of_their_own(board: Machine) -> None:
    devs = board.check("ls /sys/bus/platform/devices").split()
    assert {"wb-button", "wb-switch.1", "wb-switch.2", "wb-switch.3"} <= set(devs), devs


def test_unplug_runs_the_drivers_remove_and_plug_probes_it_again(board: Machine) -> None:
    assert board.run(f"test -d {TEST}").ok, "wb_test should be bound to wb-button"
    board.check(f"{BUTTON} unplug")
    assert not board.run("test -e /sys/bus/platform/devices/wb-button").ok, "the device should be gone"
    assert not board.run(f"test -d {TEST}").ok, "wb_test's remove() should have run (its debugfs folder goes)"
    again = board.run(f"{BUTTON} unplug")
    assert again.status == 1 and "already unplugged" in again.stderr, again
    board.check(f"{BUTTON} plug")
    assert board.run(f"test -d {TEST}").ok, "plugging the device back in should probe wb_test again"
    assert "already plugged in" in board.run(f"{BUTTON} plug").stderr
    assert board.oops() is None, board.oops()
