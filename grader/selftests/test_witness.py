"""The kernel's witness: sigtrace in the VM (vm/sigtrace.c) and its reader (gradelib/witness.py).

A program with known signals (witness_signals.c) runs in one VM boot; each
count sigtrace shows must be the exact one: takes by a handler, by
sigwaitinfo() and by signalfd, merges, a child followed from its parent,
queue full, info lost, ignored; a recording starts from zero; `sigtrace --
COMMAND` stays through the signals of its job.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from gradelib.cli import REPO
from gradelib.witness import parse
from vm import fetch
from vm.machine import Machine

SAMPLE = """\
pid 57 (burstwatch):
  kernel: SIGTERM generated 1, merged 0, taken 1
  kernel: SIGIO generated 200, merged 191, taken 9
pid 60 (probe):
  kernel: SIGRTMIN generated 10, merged 0, taken 5, queue full 3, ignored 1, info lost 2
pid 61 (sleep):
  kernel: no signal
sigtrace: warning: the table of forks was full: the children of 4 forks are not followed (a recording has room for 4096 keys at least: record a shorter run)
timeline (seconds after `sigtrace start`, at CLOCK_MONOTONIC 12.000000 s):
    +0.000812  generate  SIGIO        pid 57     made pending, SI_KERNEL
"""


def test_parse_reads_sigtrace_s_lines_as_they_are() -> None:
    rec = parse(SAMPLE)
    io = rec.count(57, "SIGIO")
    assert (io.generated, io.merged, io.taken) == (200, 191, 9)
    assert io.line == "kernel: SIGIO generated 200, merged 191, taken 9"
    rt = rec.count(60, "SIGRTMIN")
    assert (rt.queue_full, rt.ignored, rt.info_lost) == (3, 1, 2)
    assert rec.signals(61) == {} and rec.count(61, "SIGIO").taken == 0
    assert rec.notes == ["sigtrace: warning: the table of forks was full: the children of 4 forks are not followed (a recording has room for 4096 keys at least: record a shorter run)"]
    assert rec.timeline.startswith("timeline ") and "made pending" in rec.timeline
    block = rec.summary({57: "`burstwatch`", 61: "`sleep 9`"}, show_empty=True)
    assert "      kernel: SIGIO generated 200, merged 191, taken 9" in block
    assert "`sleep 9` (pid 61): kernel: no signal" in block
    quiet = parse("pid 61 (sleep):\n  kernel: no signal\n")
    assert quiet.summary({61: "`sleep 9`"}) == ""  # nothing to say unless asked to show_empty


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory):
    fetch.ensure(quiet=True)
    exe = tmp_path_factory.mktemp("witness") / "witness_signals"
    subprocess.run(["gcc", "-O1", "-Wall", "-Wextra", "-Werror", "-o", str(exe),
                    str(Path(__file__).with_name("witness_signals.c"))], check=True)
    with Machine(files={"/lab/witness_signals": exe}) as m:
        yield m


def run(vm: Machine, mode: str) -> tuple[int, str]:
    """sigtrace start; the program; its pid and `sigtrace show -t` of it."""
    vm.check("sigtrace start")
    out = vm.check(f"/lab/witness_signals {mode}")
    pid = int(re.search(r"^pid (\d+)", out, re.M).group(1))
    return pid, vm.check(f"sigtrace show -t -p {pid}")


def test_takes_by_handler_sigwaitinfo_and_signalfd_are_all_counted(vm: Machine) -> None:
    pid, shown = run(vm, "paths")
    rec = parse(shown)
    got = {s: (c.generated, c.merged, c.taken) for s, c in rec.signals(pid).items()}
    assert got == {"SIGUSR1": (3, 0, 3), "SIGUSR2": (7, 1, 5), "SIGHUP": (7, 0, 7)}, shown
    assert "by its handler" in rec.timeline and "by sigwaitinfo" in rec.timeline and "by signalfd" in rec.timeline


def test_a_new_recording_starts_from_zero(vm: Machine) -> None:
    out = vm.check("/lab/witness_signals paths")
    pid = int(re.search(r"^pid (\d+)", out, re.M).group(1))
    vm.check("sigtrace start")
    shown = vm.check(f"sigtrace show -p {pid}")
    assert parse(shown).signals(pid) == {} and "kernel: no signal" in shown


def test_the_children_of_a_process_are_followed(vm: Machine) -> None:
    pid, shown = run(vm, "child")
    child = int(re.search(r"^pid (\d+) \(witness_signal", shown.split(f"pid {pid} ", 1)[1], re.M).group(1))
    rec = parse(shown)
    assert rec.count(child, "SIGUSR1").taken == 2, shown
    assert rec.count(pid, "SIGCHLD").generated == 1, shown


def test_queue_full_info_lost_and_ignored_are_shown(vm: Machine) -> None:
    pid, shown = run(vm, "rt")
    rec = parse(shown)
    rt = rec.count(pid, "SIGRTMIN")
    assert (rt.generated, rt.queue_full, rt.info_lost) == (6, 2, 2), shown
    assert rec.count(pid, "SIGUSR1").ignored == 1, shown
    assert "queue full 2" in rt.line and "info lost 2" in rt.line


def test_sigtrace_runs_a_command_and_stays_through_its_job_s_signals(vm: Machine) -> None:
    # setsid: the command and sigtrace are one process group, as a job in a shell
    out = vm.check("setsid sigtrace -- /lab/witness_signals wait > /tmp/w.out 2>&1 & g=$!; "
                   "until grep -q ready /tmp/w.out; do usleep 5000; done; kill -USR1 -$g; "
                   "while kill -0 $g 2>/dev/null; do usleep 5000; done; cat /tmp/w.out")
    pid = int(re.search(r"^pid (\d+)", out, re.M).group(1))
    assert "witness_signals exited with status 0" in out, out
    assert parse(out).count(pid, "SIGUSR1").line == "kernel: SIGUSR1 generated 1, merged 0, taken 1", out


def test_the_timeline_is_cut_to_the_lines_asked_for(vm: Machine) -> None:
    pid, _ = run(vm, "paths")
    shown = vm.check(f"sigtrace show -t -n 8 -p {pid}")
    lines = shown.split("timeline ", 1)[1].splitlines()[1:]
    assert any("lines not shown" in ln for ln in lines) and len(lines) <= 9, shown


def test_sigtrace_says_how_to_use_it(vm: Machine) -> None:
    assert "sigtrace [-t] [-n LINES] -- COMMAND" in vm.check("sigtrace --help")
    r = vm.run("sigtrace bogus")
    assert r.status == 2 and "Usage:" in r.stderr
    assert REPO.joinpath("vm", "sigtrace.c").is_file()


def test_a_fatal_signal_is_shown_as_the_sigkill_it_became(vm: Machine) -> None:
    """complete_signal() ends a process whose fatal signal it generates with SIGKILL: the timeline's
    `deliver SIGKILL` names the signal that was fatal, and that signal is never taken."""
    vm.check("sigtrace start")
    pid = int(vm.check("sleep 30 & p=$!; usleep 100000; kill -TERM $p; wait $p; echo $p").split()[-1])
    shown = vm.check(f"sigtrace show -t -p {pid}")
    assert "SIGTERM was fatal: complete_signal() kills the process" in parse(shown).timeline, shown
    assert parse(shown).count(pid, "SIGTERM").taken == 0, shown
