"""grader/grade-all on a class of mixed good, bad and malformed submissions."""
from __future__ import annotations

import csv
import io
import shutil
import signal
import subprocess
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from gradelib.cli import REPO

GRADE_ALL = REPO / "grader" / "grade-all"
LAB = "1"  # one host lab keeps the batch quick; the pipeline is the same for every lab


def _tar(src: Path, dest: Path, arcname: str) -> None:
    with tarfile.open(dest, "w:gz") as tf:
        tf.add(src, arcname=arcname)


def _zip(src: Path, dest: Path) -> None:
    with zipfile.ZipFile(dest, "w") as zf:
        for p in sorted(src.rglob("*")):
            zf.write(p, p.relative_to(src.parent))


@pytest.fixture(scope="module")
def klass(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("class") / "submissions"
    d.mkdir()
    lab = "01-signal"
    shutil.copytree(REPO / "solutions" / lab, d / "alice" / lab)                  # good, a folder
    _tar(REPO / "solutions" / lab, d / "bob.tar.gz", f"bob-work/{lab}")            # good, one top folder in a tarball
    _zip(REPO / "solutions" / lab, d / "carol.zip")                                # good, a zip
    shutil.copytree(REPO / "labs" / lab, d / "dave" / "labs" / lab)                # the untouched starter, in labs/
    (d / "erin").mkdir()                                                           # empty
    (d / "frank").mkdir()
    (d / "frank" / "notes.txt").write_text("I did not do the labs\n")              # wrong layout
    with tarfile.open(d / "mallory.tar.gz", "w:gz") as tf:                         # ../ path
        data = b"pwned\n"
        ti = tarfile.TarInfo("../escaped.txt")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    with tarfile.open(d / "oscar.tar.gz", "w:gz") as tf:                           # absolute path
        ti = tarfile.TarInfo("/tmp/absolute-escape.txt")
        ti.size = 1
        tf.addfile(ti, io.BytesIO(b"x"))
    with tarfile.open(d / "trudy.tar.gz", "w:gz") as tf:                           # link to outside
        ti = tarfile.TarInfo(f"{lab}/shutdown.c")
        ti.type = tarfile.SYMTYPE
        ti.linkname = "/etc/shadow"
        tf.addfile(ti)
    (d / "victor.zip").write_bytes(b"this is not a zip file")                      # damaged archive
    peggy = d / "peggy" / lab                                                      # link inside a folder
    shutil.copytree(REPO / "labs" / lab, peggy)
    for c in peggy.glob("*.c"):
        c.unlink()
        c.symlink_to("/etc/passwd")
    (d / "quentin").mkdir()                                                        # a link to itself
    (d / "quentin" / lab).symlink_to(d / "quentin" / lab)
    (d / "quentin" / "loop").symlink_to("loop")
    lena = d / "lena" / lab                                                        # link loops inside a lab folder
    shutil.copytree(REPO / "solutions" / lab, lena)
    (lena / "loop").symlink_to(".")
    (lena / "a").symlink_to("b")
    (lena / "b").symlink_to("a")
    with tarfile.open(d / "rupert.tar.gz", "w:gz") as tf:                          # a file where a folder must go
        for name in (lab, f"{lab}/worker.c"):
            ti = tarfile.TarInfo(name)
            ti.size = 1
            tf.addfile(ti, io.BytesIO(b"x"))
    _zip(REPO / "solutions" / lab, d / "sybil.zip")                                # encrypted (flagged so)
    raw = bytearray((d / "sybil.zip").read_bytes())
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # local and central headers: flag bit 0
        at = raw.find(sig)
        while at >= 0:
            raw[at + off] |= 0x1
            at = raw.find(sig, at + 4)
    (d / "sybil.zip").write_bytes(bytes(raw))
    _zip(REPO / "solutions" / lab, d / "ted.zip")                                  # a bad CRC
    raw = bytearray((d / "ted.zip").read_bytes())
    at = raw.find(b"#include")
    raw[at:at + 8] = b"#exclude"
    (d / "ted.zip").write_bytes(bytes(raw))
    shutil.copytree(REPO / "solutions" / lab, d / "uma" / lab)                     # two submissions, one name
    _tar(REPO / "labs" / lab, d / "uma.tar.gz", lab)
    shutil.copytree(REPO / "solutions" / lab, d / "walter smith" / lab)            # and two names, one file
    shutil.copytree(REPO / "labs" / lab, d / "walter_smith" / lab)
    return d


def _run(d: Path, out: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(GRADE_ALL), "--lab", LAB, "--out", str(out), str(d)], capture_output=True,
                          text=True, **kw)


def _book(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "gradebook.csv") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def graded(klass: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("out")
    res = _run(klass, out)
    assert res.returncode == 0, res.stdout + res.stderr
    return out, res


DUPLICATES = {"uma [uma]", "uma [uma.tar.gz]", "walter smith [walter smith]", "walter_smith [walter_smith]"}


def test_every_submission_gets_a_row(klass: Path, graded) -> None:
    out, _ = graded
    book = _book(out)
    plain = {p.name.split(".")[0] for p in klass.iterdir()} - {"uma", "walter smith", "walter_smith"}
    assert sorted(book) == sorted(plain | DUPLICATES)
    assert len(list((out / "reports").glob("*.json"))) == len(list(klass.iterdir())), "a report was overwritten"


def test_two_submissions_with_one_name_both_keep_their_rows(graded) -> None:
    book = _book(graded[0])
    assert int(book["uma [uma]"]["score"]) == int(book["uma [uma]"]["max_score"]) > 0, book["uma [uma]"]
    assert book["uma [uma.tar.gz]"]["score"] == "0", book["uma [uma.tar.gz]"]
    assert int(book["walter smith [walter smith]"]["score"]) > 0
    assert book["walter_smith [walter_smith]"]["score"] == "0"
    for name in DUPLICATES:
        assert "duplicate name" in book[name]["status"], book[name]


def test_good_submissions_in_every_form_get_full_marks(graded) -> None:
    book = _book(graded[0])
    for s in ("alice", "bob", "carol"):
        assert book[s]["status"] == "graded", book[s]
        assert int(book[s]["score"]) == int(book[s]["max_score"]) > 0, book[s]


def test_the_starter_scores_zero(graded) -> None:
    row = _book(graded[0])["dave"]
    assert row["status"] == "graded" and row["score"] == "0" and int(row["max_score"]) > 0, row


@pytest.mark.parametrize("student, words", [
    ("erin", "empty submission"),
    ("frank", "wrong layout"),
    ("mallory", "outside the archive"),
    ("oscar", "absolute path"),
    ("trudy", "is a link"),
    ("victor", "not a readable zip"),
    ("quentin", "wrong layout"),
    ("rupert", "cannot be unpacked"),
    ("sybil", "encrypted"),
    ("ted", "cannot be unpacked"),
])
def test_malformed_submissions_say_what_is_wrong(graded, student: str, words: str) -> None:
    row = _book(graded[0])[student]
    assert row["status"].startswith("malformed") and words in row["status"], row


def test_a_link_out_of_a_folder_submission_is_not_followed(graded) -> None:
    out = graded[0]
    row = _book(out)["peggy"]
    assert row["status"] == "graded" and row["score"] == "0", row
    assert "link to outside" in (out / "reports" / "peggy.txt").read_text()


def test_link_loops_in_a_lab_folder_are_skipped_and_the_rest_is_graded(klass: Path, graded) -> None:
    out = graded[0]
    row = _book(out)["lena"]
    assert row["status"] == "graded" and int(row["score"]) == int(row["max_score"]) > 0, row
    report = (out / "reports" / "lena.txt").read_text()
    for name in ("loop", "a", "b"):
        assert f"01-signal/{name}" in report, report[:2000]  # each skipped link is named
    assert "loops" in report, report[:2000]
    for text in ((out / "gradebook.csv").read_text(), report):
        assert str(klass) not in text and str(klass.resolve()) not in text, "a host path is shown"


def test_nothing_escapes_from_archives(klass: Path, graded) -> None:
    assert not (klass.parent / "escaped.txt").exists()
    assert not Path("/tmp/absolute-escape.txt").exists()


def test_reports_exist_for_each_student(graded) -> None:
    out = graded[0]
    for s in ("alice", "dave", "erin"):
        assert (out / "reports" / f"{s}.txt").read_text().strip()
        assert (out / "reports" / f"{s}.json").is_file()


def test_a_second_run_skips_finished_work(klass: Path, graded) -> None:
    out, _ = graded
    res = _run(klass, out)
    assert res.returncode == 0
    assert "0 to grade" in res.stdout, res.stdout


def test_an_interrupted_batch_resumes_where_it_stopped(klass: Path, tmp_path: Path) -> None:
    """Four of the class (two good, the starter, an empty one): what resumes is the same for twenty."""
    small = tmp_path / "class"
    small.mkdir()
    for name in ("alice", "bob.tar.gz", "dave", "erin"):
        src = klass / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, small / name)
    klass = small
    out = tmp_path / "out"
    proc = subprocess.Popen([str(GRADE_ALL), "--lab", LAB, "--out", str(out), str(klass)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list((out / "reports").glob("*.json")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    text = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, text
    done_before = len(list((out / "reports").glob("*.json")))
    assert 1 <= done_before < len(list(klass.iterdir()))
    _book(out)  # the gradebook is readable after an interruption
    res = _run(klass, out)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{done_before} already graded" in res.stdout, res.stdout
    assert len(_book(out)) == len(list(klass.iterdir()))


def test_a_submission_over_the_time_limit_gets_a_row_that_says_so(tmp_path: Path) -> None:
    d = tmp_path / "class"
    for student in ("slow", "zed"):  # every program sleeps, so every test waits out its own timeout
        shutil.copytree(REPO / "labs" / "01-signal", d / student / "01-signal")
        for c in (d / student / "01-signal").glob("*.c"):
            c.write_text("#include <unistd.h>\nint main(void) { for (;;) pause(); }\n")
    res = subprocess.run([str(GRADE_ALL), "--lab", LAB, "--time-limit", "3", "--out", str(tmp_path / "out"), str(d)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    book = _book(tmp_path / "out")
    for s in ("slow", "zed"):  # neither finishes in 3 s, and the batch goes on past the first
        assert book[s]["status"].startswith("time limit") and "3 s" in book[s]["status"], book[s]


def test_the_gradebook_holds_numbers_and_the_summary_counts_failures(graded) -> None:
    out = graded[0]
    row = _book(out)["dave"]
    assert row["lab1"] == "0" and int(row["lab1_max"]) > 0, row
    assert _book(out)["alice"]["lab1"] == _book(out)["alice"]["lab1_max"]
    with open(out / "summary.csv") as f:
        summary = list(csv.DictReader(f))
    assert summary and {"lab", "task", "test", "points", "failed", "graded"} <= set(summary[0])
    worker = next(r for r in summary if r["test"] == "test_sigint_stops_the_worker_with_a_summary_and_exit_0")
    assert int(worker["failed"]) >= 1 and int(worker["graded"]) >= 4, worker  # the starters fail it


def test_a_students_report_holds_every_failing_tests_message(graded) -> None:
    text = (graded[0] / "reports" / "dave.txt").read_text()
    failing = text.count("[FAILED]")
    assert failing >= 5, text[:2000]
    assert text.count("\n    ") >= failing, "each failing test should come with its message"


def test_grading_in_parallel_gives_the_same_results_as_one_at_a_time(tmp_path: Path) -> None:
    d = tmp_path / "class"
    shutil.copytree(REPO / "solutions" / "01-signal", d / "ann" / "01-signal")
    shutil.copytree(REPO / "labs" / "01-signal", d / "ben" / "01-signal")
    _tar(REPO / "solutions" / "01-signal", d / "cid.tar.gz", "01-signal")
    rows = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"out{jobs}"
        res = subprocess.run([str(GRADE_ALL), "--lab", LAB, "-j", jobs, "--out", str(out), str(d)],
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stdout + res.stderr
        rows[jobs] = {s: (r["score"], r["max_score"], r["status"]) for s, r in _book(out).items()}
    assert rows["1"] == rows["2"], rows
