"""grader/guest/waitline.c, the VM tests' wait for a program's line (GuestProc.expect), run on the host:
it answers as `tail -n +FIRST FILE | grep -n -m1 -E PATTERN` did, and it wakes when the file grows."""
from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

from gradelib.vmlab import build_helper


@pytest.fixture(scope="module")
def waitline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_helper("waitline", tmp_path_factory.mktemp("helpers"))


def _run(waitline: Path, out: Path, first: int, pattern: str, timeout: float = 10) -> subprocess.CompletedProcess:
    return subprocess.run([str(waitline), str(out), str(first), pattern, str(out.with_suffix(".status"))],
                          capture_output=True, text=True, timeout=timeout)


def test_the_line_is_numbered_from_first_as_grep_n_numbers_tails_output(waitline: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.out"
    out.write_text("ready\ngot 1\nnoise\ngot 2\n")
    assert _run(waitline, out, 1, "^got").stdout == "2:got 1\n"
    assert _run(waitline, out, 3, "^got").stdout == "2:got 2\n"  # lines 3 and 4: `got 2` is the second


def test_a_last_line_with_no_newline_yet_counts(waitline: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.out"
    out.write_text("ready\ndone 3")
    assert _run(waitline, out, 2, r"^done [0-9]").stdout == "1:done 3\n"


def test_after_the_program_ended_no_match_is_status_3(waitline: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.out"
    out.write_text("ready\n")
    out.with_suffix(".status").write_text("0\n")
    res = _run(waitline, out, 1, "^never")
    assert (res.returncode, res.stdout) == (3, "")
    assert _run(waitline, out, 1, "^ready$").returncode == 0  # what it printed before it ended still counts


def test_a_bad_pattern_is_status_2_with_the_reason(waitline: Path, tmp_path: Path) -> None:
    res = _run(waitline, tmp_path / "p.out", 1, "(")
    assert res.returncode == 2 and "bad pattern" in res.stderr


def test_it_wakes_when_the_line_is_written_and_when_the_program_ends(waitline: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.out"
    out.write_text("ready\n")

    def later(action) -> threading.Timer:
        t = threading.Timer(0.5, action)
        t.start()
        return t

    t = later(lambda: out.open("a").write("got SIGIO\n"))
    start = time.monotonic()
    res = _run(waitline, out, 2, "^got")
    t.join()
    assert res.stdout == "1:got SIGIO\n" and time.monotonic() - start < 5

    def end() -> None:  # as spawn() writes the status: whole, under another name, then renamed
        (tmp_path / "p.st").write_text("0\n")
        (tmp_path / "p.st").rename(out.with_suffix(".status"))

    t = later(end)
    start = time.monotonic()
    assert _run(waitline, out, 3, "^more").returncode == 3 and time.monotonic() - start < 5
    t.join()
