"""The lecture demos (slides/demos/): each says, run for real, what its slide says.

The demos are built by their own Makefile (`make -C slides/demos`, -Werror),
from a copy in a temporary folder so the source tree stays clean. Every
expected line below is quoted from a deck (the slide or its notes) or from
the instructor's guide (slides/README.md). The demos are deterministic by
construction: they block, generate, unblock and count; the lost wake-up is
forced with raise() inside the window and ended by an alarm after 2 s.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from gradelib.cli import REPO

DEMOS = REPO / "slides" / "demos"


@pytest.fixture(scope="module")
def demos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demos") / "demos"
    shutil.copytree(DEMOS, out, ignore=shutil.ignore_patterns(
        "oneshot_trap_gnu11", "oneshot_trap_c11", "lostwakeup", "pipe_sigio", "private_first", "rt_kill_limit"))
    res = subprocess.run(["make", "-C", str(out)], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=120)
    assert res.returncode == 0, f"make -C slides/demos failed:\n{res.stdout}"
    return out


def sh(demos: Path, command: str) -> str:
    """Run a slide's command line as the slide shows it, from the demos' parent."""
    res = subprocess.run(["sh", "-c", command], cwd=demos.parent, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=30)
    assert res.returncode == 0, f"{command}: exit status {res.returncode}\n{res.stdout}"
    return res.stdout


def test_the_demos_build_warning_free(demos: Path) -> None:
    for prog in ("oneshot_trap_gnu11", "oneshot_trap_c11", "lostwakeup", "pipe_sigio", "private_first",
                 "rt_kill_limit"):
        assert (demos / prog).is_file(), f"make -C slides/demos did not build {prog}"


# Deck 01, "Live demo": handler twice, status 0 / killed: status 138 (128+SIGUSR1).
def test_oneshot_trap_gnu11_runs_the_handler_twice_and_exits_0(demos: Path) -> None:
    out = sh(demos, 'demos/oneshot_trap_gnu11; echo "status $?"')
    assert out.count("handler ran") == 2, out
    assert "survived both" in out and out.rstrip().endswith("status 0"), out


def test_oneshot_trap_c11_is_killed_by_the_second_sigusr1_status_138(demos: Path) -> None:
    out = sh(demos, 'demos/oneshot_trap_c11; echo "status $?"')
    assert out.count("handler ran") == 1, out
    assert "raise #2" in out and "survived" not in out, out
    assert out.rstrip().endswith("status 138"), out


# Deck 02, "Live demo": "...still asleep 2 s later: lost wake-up" / "woken at once, got=1".
def test_lostwakeup_pause_sleeps_through_the_signal_it_already_got(demos: Path) -> None:
    out = sh(demos, "demos/lostwakeup pause")
    assert "pause: got=1 but still asleep 2 s later: lost wake-up" in out, out


def test_lostwakeup_sigsuspend_is_woken_at_once(demos: Path) -> None:
    out = sh(demos, "demos/lostwakeup sigsuspend")
    assert "sigsuspend: woken at once, got=1" in out, out


# Deck 00: 10 events while blocked -> 1 SIGIO; with F_SETSIG SIGRTMIN -> 10.
@pytest.mark.parametrize("args", ["", " 10"])
def test_pipe_sigio_10_writes_make_one_sigio_with_si_kernel(demos: Path, args: str) -> None:
    out = sh(demos, f"demos/pipe_sigio{args}")
    assert "SIGIO deliveries:    1 (si_code 128 = SI_KERNEL)" in out, out
    assert "SIGRTMIN deliveries: 0" in out, out


@pytest.mark.parametrize("args", ["--rt", "--rt 10"])
def test_pipe_sigio_rt_queues_10_sigrtmin_with_poll_in_fd_and_band(demos: Path, args: str) -> None:
    out = sh(demos, f"demos/pipe_sigio {args}")
    assert "SIGRTMIN deliveries: 10 (si_code 1 = POLL_IN 1, si_fd 3, si_band 0x41)" in out, out
    assert "SIGIO deliveries:    0" in out, out


# Lab 5's full queue on the host (slides/README.md, deck 05): limit 5 -> 5 x SIGRTMIN + 1 x SIGIO.
# RLIMIT_SIGPENDING counts every queued signal of the real user (per user
# namespace since Linux 5.14): a fresh user namespace starts the count at 0,
# whatever other processes of the same user have pending.
def test_pipe_sigio_with_a_queue_limit_of_5_falls_back_to_one_sigio(demos: Path) -> None:
    out = sh(demos, "unshare --user --map-root-user demos/pipe_sigio --rt --limit 5 10")
    assert "SIGRTMIN deliveries: 5 (si_code 1 = POLL_IN 1, si_fd 3, si_band 0x41)" in out, out
    assert "SIGIO deliveries:    1 (si_code 128 = SI_KERNEL)" in out, out


# Deck 05 and lab 5's chapter: past RLIMIT_SIGPENDING, sigqueue() of a realtime signal fails with
# EAGAIN, while kill() succeeds with no queue entry: the two kill()s merge into one SIGRTMIN whose
# siginfo is zeroed (si_pid 0).  In a user namespace of its own, as above.
def test_rt_kill_over_the_limit_succeeds_without_an_entry_and_merges(demos: Path) -> None:
    out = sh(demos, "unshare --user --map-root-user demos/rt_kill_limit")
    assert "sigqueue(SIGRTMIN) over the limit: -1 EAGAIN" in out, out
    assert "kill(SIGRTMIN) twice over the limit: 0 and 0" in out, out
    assert out.count("taken: SIGRTMIN si_code SI_USER si_pid 0") == 1, out
    assert out.count("taken: SIGRTMIN+1 si_code SI_QUEUE") == 3, out


# Deck 06 and lab 6's chapter: with F_OWNER_TID the file's SIGRTMIN is the waiting thread's own
# (private) and a kill()ed SIGTERM the process's (shared); sigwaitinfo() empties the private queue
# first, so SIGTERM waits behind every SIGRTMIN, even those queued after it.  With the process as
# the owner both are shared, and the lower number (SIGTERM) comes first.
@pytest.mark.parametrize("run", range(3))
def test_a_killed_sigterm_waits_behind_the_threads_private_sigrtmin(demos: Path, run: int) -> None:
    out = sh(demos, "demos/private_first")
    assert "taken: SIGRTMIN x15, then SIGTERM x1" in out, out
    out = sh(demos, "demos/private_first --pid")
    assert "taken: SIGTERM x1, then SIGRTMIN x15" in out, out
