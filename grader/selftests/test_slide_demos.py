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
        "oneshot_trap_gnu11", "oneshot_trap_c11", "lostwakeup", "pipe_sigio"))
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
    for prog in ("oneshot_trap_gnu11", "oneshot_trap_c11", "lostwakeup", "pipe_sigio"):
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
