"""The chapters' demonstrations do what the chapters say they do.

Lab 1's ticker (section 3 of its chapter): as the student gets it, its SIGALRM
handler calls printf() while main loops in printf(), and it hangs; the fixed
program (the solution) does not.  Built as the chapter says to build it,
run with stdout on /dev/null (where it hangs fastest), and watched through
/proc: the hang is a sleep in futex() on the very address the program prints
as stdout's lock, with no CPU time spent any more.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from gradelib import diagnose
from gradelib.cli import REPO

HANG_WITHIN = 20.0  # seconds; measured on the host and in the VM: well under 2 s (grader/bench_hang.py)


def _build(src: Path, out: Path) -> Path:
    res = subprocess.run(["gcc", "-Wall", "-Wextra", "-Werror", "-O1", "-g", "-o", str(out), str(src)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return out


@pytest.fixture(scope="module")
def tickers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ticker")
    return {"starter": _build(REPO / "labs" / "01-signal" / "ticker.c", d / "ticker-starter"),
            "solution": _build(REPO / "solutions" / "01-signal" / "ticker.c", d / "ticker-solution")}


@pytest.mark.parametrize("run", range(3))
def test_the_starter_ticker_hangs_in_stdouts_lock(tickers: dict[str, Path], tmp_path: Path, run: int) -> None:
    err = tmp_path / "stderr"
    with open(err, "wb") as e:
        p = subprocess.Popen([str(tickers["starter"]), "-o", "/dev/null"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=e)
    try:
        snap = diagnose.futex_stall(p.pid, HANG_WITHIN)
        story = err.read_text()
        assert snap is not None, f"the starter ticker did not hang within {HANG_WITHIN:g} s:\n{story}"
        m = re.search(r"stdout's lock at (0x[0-9a-f]+)", story)
        assert m, story
        assert snap.args[0] == int(m.group(1), 16), (
            f"it hangs in futex() on {snap.args[0]:#x}, not on stdout's lock {m.group(1)}:\n{story}")
    finally:
        p.kill()
        p.wait()


def test_the_fixed_ticker_does_not_hang(tickers: dict[str, Path]) -> None:
    # 2000 ticks, 2 s: the starter hangs in well under that (HANG_WITHIN is a generous bound).
    res = subprocess.run([str(tickers["solution"]), "-o", "/dev/null", "2000"], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    m = re.search(r"ticker: done, (\d+) lines, (\d+) ticks, (\d+) reported by main", res.stderr)
    assert m and int(m.group(2)) == 2000 and int(m.group(3)) > 0, res.stderr
