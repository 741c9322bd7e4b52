"""grader/grade-all: grade a whole class.

usage: grader/grade-all [--out OUT] [--lab N] [--repeat N] DIR

Every entry of DIR is one student's submission: a folder, a .tar.gz/.tgz/.tar
or a .zip, named after the student.  A submission holds the lab folders
(01-signal/, 02-sigaction/, ...) at its top, or inside one top-level folder,
or inside labs/.

Writes OUT/gradebook.csv (one row per student: total, each lab, status) and
OUT/reports/STUDENT.txt and .json (default OUT: DIR.grades next to DIR).
Results are written atomically as each student finishes; a second run skips
students whose submission has not changed, so the batch can be interrupted
and restarted.  A malformed submission (empty, wrong layout, unsafe archive)
gets a row that says what is wrong and never stops the batch.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from .cli import (GradeError, GradeTimeout, Stopped, full_report, gradescope, on_stop_signals, run_grading,
                  stop_all, write_atomic)
from .sandbox import hide, inert

ARCHIVES = (".tar.gz", ".tgz", ".tar", ".zip")
LAB_DIR = re.compile(r"^\d\d-[a-z0-9-]+$")
MAX_MEMBERS = 5000
MAX_BYTES = 64 << 20
DEFAULT_TIME_LIMIT = 1200.0  # seconds for one submission, all labs
STATUS_OK = "graded"


class Malformed(Exception):
    """The submission cannot be graded; the message says why, for the gradebook."""


def student_name(entry: Path) -> str:
    name = entry.name
    for ext in ARCHIVES:
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def fingerprint(entry: Path) -> str:
    """Changes when the submission changes (content of an archive; names, sizes and times in a folder)."""
    h = hashlib.sha256()
    if entry.is_file():
        with open(entry, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    else:
        for p in sorted(entry.rglob("*")):
            st = os.lstat(p)
            h.update(f"{p.relative_to(entry)}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()


def _check_member(name: str) -> None:
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise Malformed(f"unsafe archive: member {name!r} has an absolute path")
    if ".." in Path(name).parts:
        raise Malformed(f"unsafe archive: member {name!r} points outside the archive (..)")


def extract(archive: Path, dest: Path) -> None:
    """Unpack after checking every member: no absolute or .. paths, no links, no devices, bounded size."""
    total = 0
    if archive.name.endswith(".zip"):
        try:
            zf = zipfile.ZipFile(archive)
        except (zipfile.BadZipFile, OSError) as e:
            raise Malformed(f"not a readable zip file ({e})")
        with zf:
            infos = zf.infolist()
            if len(infos) > MAX_MEMBERS:
                raise Malformed(f"the archive has more than {MAX_MEMBERS} files")
            for i in infos:
                _check_member(i.filename)
                mode = i.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise Malformed(f"unsafe archive: member {i.filename!r} is a symbolic link")
                total += i.file_size
                if total > MAX_BYTES:
                    raise Malformed(f"the archive unpacks to more than {MAX_BYTES >> 20} MiB")
            for i in infos:
                if i.flag_bits & 0x1:
                    raise Malformed(f"the zip member {i.filename!r} is encrypted: submit it without a password")
            try:
                for i in infos:
                    target = dest / i.filename
                    if i.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(i) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, OSError, EOFError, ValueError) as e:
                raise Malformed(f"the zip file cannot be unpacked ({_why(e)})")
        return
    try:
        tf = tarfile.open(archive)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise Malformed(f"not a readable tar archive ({e})")
    with tf:
        try:
            members = tf.getmembers()
        except (tarfile.TarError, EOFError, OSError) as e:
            raise Malformed(f"a damaged tar archive ({e})")
        if len(members) > MAX_MEMBERS:
            raise Malformed(f"the archive has more than {MAX_MEMBERS} files")
        for m in members:
            _check_member(m.name)
            if m.issym() or m.islnk():
                raise Malformed(f"unsafe archive: member {m.name!r} is a link (to {m.linkname!r})")
            if not (m.isfile() or m.isdir()):
                raise Malformed(f"unsafe archive: member {m.name!r} is not a file or folder")
            total += m.size
            if total > MAX_BYTES:
                raise Malformed(f"the archive unpacks to more than {MAX_BYTES >> 20} MiB")
        try:
            for m in members:
                target = dest / m.name
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tf.extractfile(m)
                if src is None:
                    continue
                with src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
        except (tarfile.TarError, OSError, EOFError, ValueError) as e:
            # e.g. a file where a folder must go ("a" then "a/b"), or a truncated member
            raise Malformed(f"the tar archive cannot be unpacked ({_why(e)})")


def _why(e: BaseException, entry: Path | None = None) -> str:
    """An exception in a few words, without the scratch folder's path nor the class folder's (a path
    inside the submission is shown from the submission's own name)."""
    text = str(e) or type(e).__name__
    if entry is not None:
        for where in {str(entry.parent), str(entry.parent.resolve())}:
            text = text.replace(where.rstrip("/") + "/", "")
    return re.sub(r"/tmp/grade-all-[^/\s']+/x/?", "", text)[:200]


def find_labs_root(top: Path) -> Path:
    """The folder that holds the lab folders: top itself, top/labs, or its single top-level folder."""
    seen: list[Path] = []
    cands = [top, top / "labs"]
    subdirs = [d for d in top.iterdir() if d.is_dir() and not d.is_symlink() and not d.name.startswith(".")
               and d.name != "__MACOSX"] \
        if top.is_dir() else []
    if len(subdirs) == 1:
        cands += [subdirs[0], subdirs[0] / "labs"]
    for c in cands:
        if c.is_dir() and not c.is_symlink():
            seen.append(c)
            if any(LAB_DIR.match(d.name) for d in c.iterdir() if d.is_dir()):
                return c
    if top.is_dir() and not any(top.rglob("*")):
        raise Malformed("empty submission")
    raise Malformed("wrong layout: no lab folder (such as 01-signal/) at the top, in labs/ or in one top-level folder")


def grade_one(entry: Path, lab: int | None, repeat: int, student: str | None = None,
              time_limit: float | None = None) -> dict:
    """Grade one submission; never raises: whatever goes wrong is this submission's row."""
    rec: dict = {"student": student or student_name(entry), "source": entry.name}
    try:
        rec["fingerprint"] = fingerprint(entry)
    except (OSError, RuntimeError) as e:
        rec.update(fingerprint="", status=f"malformed: cannot read it ({_why(e, entry)})", score=0, max_score=0,
                   labs={}, report=f"Not graded: cannot read {entry.name} ({_why(e, entry)})")
        return _inert_record(rec)
    work = Path(tempfile.mkdtemp(prefix="grade-all-"))
    try:
        if entry.is_file():
            if not entry.name.endswith(ARCHIVES):
                raise Malformed("not a folder, .tar.gz, .tgz, .tar or .zip")
            extract(entry, work / "x")
            top = work / "x"
            top.mkdir(exist_ok=True)
        elif entry.is_dir():
            top = entry
        else:
            raise Malformed("not a folder or an archive")
        try:
            root = find_labs_root(top)
        except OSError as e:  # a link loop, a folder that cannot be read
            raise Malformed(f"cannot read the submission ({_why(e, entry)})")
        s = run_grading(root, lab=lab, repeat=repeat, timeout=time_limit)
        labs: dict[str, list[int]] = {}
        for r in s.results:
            got, tot = labs.setdefault(str(r["lab"]), [0, 0])
            labs[str(r["lab"])] = [got + (r["points"] if r["outcome"] == "passed" else 0), tot + r["points"]]
        rec.update(status=STATUS_OK, score=s.score, max_score=s.max_score, labs=labs, report=full_report(s),
                   warnings=s.warnings, gradescope=gradescope(s),
                   tests=[{k: r[k] for k in ("lab", "task", "name", "points", "outcome", "prereq")} for r in s.results])
    except Malformed as e:
        rec.update(status=f"malformed: {e}", score=0, max_score=0, labs={}, report=f"Not graded: {e}")
    except GradeTimeout as e:
        rec.update(status=f"time limit: {e}", score=0, max_score=0, labs={},
                   report=f"Not graded: {e} (grade-all --time-limit SECONDS sets the limit per submission)")
    except GradeError as e:
        rec.update(status=f"error: {e}".splitlines()[0], score=0, max_score=0, labs={}, report=str(e))
    except Exception as e:  # noqa: BLE001  (one submission's failure never stops the batch)
        rec.update(status=f"malformed: could not unpack or grade it ({type(e).__name__}: {_why(e, entry)})",
                   score=0, max_score=0, labs={}, report=f"Not graded: {type(e).__name__}: {_why(e, entry)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _inert_record(rec)


def _inert_record(rec: dict) -> dict:
    for k in ("student", "source", "status", "report"):
        if isinstance(rec.get(k), str):
            rec[k] = inert(rec[k])
    return rec


def student_keys(entries: list[Path]) -> dict[Path, tuple[str, str]]:
    """Each entry's (student, report file name).  Two entries that map to one name (`carol/` and
    `carol.tar.gz`; `bob smith` and `bob_smith`) both keep a row: the name says which entry it is."""
    by_file: dict[str, list[Path]] = {}
    for e in entries:
        by_file.setdefault(safe_name(student_name(e)).lower(), []).append(e)
    keys: dict[Path, tuple[str, str]] = {}
    for group in by_file.values():
        for e in group:
            if len(group) == 1:
                keys[e] = (student_name(e), safe_name(student_name(e)))
            else:
                tag = hashlib.sha256(e.name.encode()).hexdigest()[:6]
                keys[e] = (f"{student_name(e)} [{e.name}]", f"{safe_name(student_name(e))}-{tag}")
    return keys


def safe_name(student: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", student) or "_"


def write_gradebook(out: Path, records: list[dict]) -> None:
    """gradebook.csv: a row per submission, numbers in their own columns (labN and labN_max), and
    summary.csv: per test, how many graded submissions failed it (the class's weak spots first)."""
    labs = sorted({lab for r in records for lab in r.get("labs", {})}, key=int)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["student", "score", "max_score", *[c for n in labs for c in (f"lab{n}", f"lab{n}_max")], "status",
                "source"])
    for r in sorted(records, key=lambda r: r["student"]):
        per = [v for n in labs for v in (r["labs"][n] if n in r.get("labs", {}) else ["", ""])]
        w.writerow([r["student"], r["score"], r["max_score"], *per, r["status"], r["source"]])
    write_atomic(out / "gradebook.csv", buf.getvalue())
    failed: dict[tuple[int, int, str], list[int]] = {}
    for r in records:
        for t in r.get("tests", []):
            k = (t["lab"], t["task"], t["name"])
            counts = failed.setdefault(k, [0, 0, t["points"]])
            counts[0] += t["outcome"] != "passed"
            counts[1] += 1
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["lab", "task", "test", "points", "failed", "graded"])
    for (lab, task, name), (nf, ng, pts) in sorted(failed.items(), key=lambda kv: (-kv[1][0], kv[0])):
        w.writerow([lab, task, name, pts, nf, ng])
    write_atomic(out / "summary.csv", buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    on_stop_signals()
    ap = argparse.ArgumentParser(prog="grader/grade-all", description="Grade every submission in a folder.")
    ap.add_argument("dir", help="a folder with one entry (folder or archive) per student")
    ap.add_argument("--out", help="where gradebook.csv and reports/ go (default: DIR.grades)")
    ap.add_argument("--lab", type=int, help="grade only lab N")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, metavar="N",
                    help="grade N submissions at a time (default: the number of cores)")
    ap.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT, metavar="SECONDS",
                    help=f"stop grading one submission after this long (default {DEFAULT_TIME_LIMIT:g})")
    a = ap.parse_args(argv)
    src = Path(a.dir).resolve()
    if not src.is_dir():
        print(f"grade-all: {src} is not a folder", file=sys.stderr)
        return 2
    out = Path(a.out).resolve() if a.out else src.with_name(src.name + ".grades")
    hide(src)
    hide(out)
    reports = out / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    entries = sorted(p for p in src.iterdir() if not p.name.startswith("."))
    keys = student_keys(entries)
    records: dict[str, dict] = {}
    todo: list[Path] = []
    for e in entries:
        student, fname = keys[e]
        saved = reports / f"{fname}.json"
        try:
            old = json.loads(saved.read_text())
            if old.get("fingerprint") == fingerprint(e) and old.get("lab") == a.lab and old.get("source") == inert(e.name):
                records[fname] = old
                continue
        except (OSError, ValueError, RuntimeError):
            pass
        todo.append(e)
    dups = sorted({keys[e][0] for e in entries if keys[e][0] != student_name(e)})
    print(f"grade-all: {len(entries)} submissions in {src}; {len(records)} already graded, {len(todo)} to grade; "
          f"results in {out}", flush=True)
    if dups:
        print(f"grade-all: warning: {len(dups)} submissions share a student name with another; each keeps its own "
              f"row: {', '.join(inert(d) for d in dups)}", flush=True)
    write_gradebook(out, list(records.values()))
    t0 = time.monotonic()
    pool = ThreadPoolExecutor(max_workers=max(1, a.jobs))
    try:
        futures = {pool.submit(grade_one, e, a.lab, a.repeat, keys[e][0], a.time_limit): (e, time.monotonic())
                   for e in todo}
        for i, fut in enumerate(as_completed(futures), 1):
            e, start = futures[fut]
            student, fname = keys[e]
            rec = fut.result()
            rec["lab"] = a.lab
            if student != student_name(e):
                rec["status"] += f" (duplicate name: another submission is also {inert(student_name(e))!r})"
            write_atomic(reports / f"{fname}.txt", rec["report"] + "\n")
            write_atomic(reports / f"{fname}.json", json.dumps(rec, indent=1))
            records[fname] = rec
            write_gradebook(out, list(records.values()))
            verdict = f"{rec['score']}/{rec['max_score']}" if rec["status"].startswith(STATUS_OK) else rec["status"]
            print(f"[{i}/{len(todo)}] {inert(student)}: {verdict} ({time.monotonic() - start:.1f} s)", flush=True)
    except (KeyboardInterrupt, Stopped) as e:
        pool.shutdown(wait=False, cancel_futures=True)
        stop_all()
        print(f"\ngrade-all: {'interrupted' if isinstance(e, KeyboardInterrupt) else e}; finished results are kept, "
              f"run again to continue", file=sys.stderr)
        raise SystemExit(130 if isinstance(e, KeyboardInterrupt) else 128 + e.signum)
    pool.shutdown(wait=True)
    n = len(todo)
    if n:
        rate = n / max(time.monotonic() - t0, 1e-9) * 60
        print(f"grade-all: graded {n} submissions in {time.monotonic() - t0:.1f} s ({rate:.1f} per minute)")
    print(f"grade-all: gradebook: {out / 'gradebook.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
