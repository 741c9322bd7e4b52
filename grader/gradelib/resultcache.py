"""The student's `make grade` remembers each lab's results while nothing the grade depends on changed.

A lab's key is a digest of everything its grade depends on:
- the lab's own files in the submission (every regular file of its folder, by path and content; the
  programs and modules the student built there are left out: the grader builds from the sources);
- the lab's tests (grader/tests/test_labNN_*.py) and the grader's code they use: gradelib, the
  plugin's configuration, the guest programs, harness libraries, the checker, the reference
  drivers, the button board and the VM (every source file of grader/ but other labs' tests and the
  project's own tests and corpus, of driver/ and of vm/);
- the guest kernel (vm/cache/current and the fetch's record of it), the compiler (`gcc --version`),
  the Python that runs pytest, how student code is contained (sandbox.mode_line()) and the time scale.

An entry is a JSON file under OUT/cache/ named for the submission's path and the lab.  It is used
only when it parses, carries this module's FORMAT, names the same submission path and lab, has the
same key, and its results are well-formed results of that lab; anything else is ignored (and
replaced by the next grading).  Nothing in the submission folder is ever read as an entry.

Only grader/grade's whole-lab gradings use it (cli.main); run_grading() never does, so grade-all,
the Gradescope autograder, --repeat, --task and -k grade anew every time.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

FORMAT = 1
REPO = Path(__file__).resolve().parent.parent.parent
# What the grade of every lab depends on, besides its own tests: folders of the repository.
SHARED = ("grader/gradelib", "grader/guest", "grader/harness", "grader/sigsafe", "grader/reference",
          "grader/tests/conftest.py", "grader/pytest.ini", "driver", "vm")
SOURCE_SUFFIXES = {".py", ".c", ".h", ".S", ".ini", ".sh", ".mk", ".json", ".lds", ".map"}
SOURCE_NAMES = {"Makefile", "Kbuild", "init", "smoke"}
# In a lab folder: what a build there leaves behind (the grader builds from the sources).
BUILT_SUFFIXES = (".o", ".ko", ".mod", ".mod.c", ".mod.o", ".cmd", ".symvers", ".order", ".a", ".so", ".d")
MAX_LAB_BYTES = 64 << 20  # past this a lab is not cached (the grader refuses such a submission anyway)
FIELDS = {"name": str, "lab": int, "task": int, "points": int, "outcome": str, "message": str, "prereq": bool}


def _is_elf(p: Path) -> bool:
    try:
        with open(p, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def _hash_tree(h: "hashlib._Hash", top: Path, rel_to: Path, source_only: bool) -> None:
    """Every regular file below `top` (or `top` itself), by path and content, in a fixed order.
    source_only: only the grader's source files (its build products and caches left out); otherwise
    every file but what a build leaves (a lab folder)."""
    if top.is_file() and not top.is_symlink():
        files = [top]
    elif top.is_dir():
        files = []
        for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if d not in ("__pycache__", ".git", "out", "cache", "build"))
            files.extend(Path(dirpath) / n for n in sorted(filenames))
    else:
        h.update(f"absent {top.relative_to(rel_to)}\n".encode())
        return
    for p in files:
        st = os.lstat(p)
        if not stat.S_ISREG(st.st_mode):
            h.update(f"other {p.relative_to(rel_to)}\n".encode())
            continue
        if source_only and not (p.suffix in SOURCE_SUFFIXES or p.name in SOURCE_NAMES):
            continue
        if not source_only and (p.name.endswith(BUILT_SUFFIXES) or p.name.startswith(".") or _is_elf(p)):
            continue
        h.update(f"file {p.relative_to(rel_to)} {st.st_size}\n".encode())
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)


def _gcc_version() -> str:
    try:
        res = subprocess.run(["gcc", "--version"], capture_output=True, text=True, timeout=10)
        return (res.stdout.splitlines() or ["?"])[0]
    except (OSError, subprocess.SubprocessError):
        return "no gcc"


def _kernel(root: Path = REPO) -> str:
    cache = root / "vm" / "cache"
    guest = os.environ.get("WORKBOOK_KERNEL", "")  # KERNEL=trixie: vm/cache/current-trixie (vm/fetch.py)
    try:
        version = (cache / (f"current-{guest}" if (cache / f"current-{guest}").is_file() else "current")).read_text().strip()
    except OSError:
        return "no kernel"
    try:
        record = (cache / version / "complete").read_text()
    except OSError:
        record = ""
    return f"{version}\n{record}"


def environment(sandbox: str, time_scale: float, root: Path = REPO) -> str:
    """The part of every key that is not a file of the repository or the submission."""
    return "\n".join([f"format {FORMAT}", _kernel(root), _gcc_version(), sys.version, sandbox,
                      f"scale {time_scale:g}"])


def lab_tests(lab: int, root: Path = REPO) -> list[Path]:
    return sorted((root / "grader" / "tests").glob(f"test_lab{lab:02d}_*.py"))


def labs(root: Path = REPO) -> list[int]:
    """The labs the grader has tests for, in order."""
    return sorted({int(p.name[8:10]) for p in (root / "grader" / "tests").glob("test_lab[0-9][0-9]_*.py")})


def key(submission: Path, lab: int, env: str, shared: str, root: Path = REPO) -> str | None:
    """The digest of what lab `lab`'s grade depends on; None when it cannot be had (a lab folder too
    large, unreadable): such a lab is graded every time."""
    h = hashlib.sha256()
    h.update(env.encode())
    h.update(shared.encode())
    for t in lab_tests(lab, root):
        _hash_tree(h, t, root, source_only=True)
    folders = sorted(submission.glob(f"{lab:02d}-*"))
    if not folders:
        h.update(b"no lab folder\n")
    try:
        for d in folders:
            if sum(p.stat().st_size for p in d.rglob("*") if p.is_file()) > MAX_LAB_BYTES:
                return None
            _hash_tree(h, d, submission, source_only=False)
    except (OSError, ValueError):
        return None
    return h.hexdigest()


def shared_digest(root: Path = REPO) -> str:
    """The grader's code that every lab's tests use (computed once per run)."""
    h = hashlib.sha256()
    for rel in SHARED:
        _hash_tree(h, root / rel, root, source_only=True)
    return h.hexdigest()


@dataclass
class Entry:
    results: list[dict]
    warnings: list[str]
    when: float  # time.time() of the grading
    seconds: float


def _path(folder: Path, submission: Path, lab: int) -> Path:
    tag = hashlib.sha256(str(submission).encode()).hexdigest()[:16]
    return folder / f"{tag}-lab{lab:02d}.json"


def _well_formed(results: object, lab: int) -> bool:
    if not isinstance(results, list) or not results:
        return False
    for x in results:
        if not isinstance(x, dict) or x.get("lab") != lab:
            return False
        if any(not isinstance(x.get(k), t) for k, t in FIELDS.items()):
            return False
        if x["outcome"] not in ("passed", "failed", "skipped") or x["points"] < 0:
            return False
    return True


def load(folder: Path, submission: Path, lab: int, k: str | None) -> Entry | None:
    """The entry for this submission and lab if it is valid for key k; otherwise None."""
    if k is None:
        return None
    p = _path(folder, submission, lab)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd) as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            data = json.loads(f.read(16 << 20))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("key") != k \
            or data.get("submission") != str(submission) or data.get("lab") != lab:
        return None
    results, warnings = data.get("results"), data.get("warnings", [])
    if not _well_formed(results, lab) or not isinstance(warnings, list) \
            or not all(isinstance(w, str) for w in warnings):
        return None
    when, seconds = data.get("when"), data.get("seconds", 0.0)
    if not isinstance(when, (int, float)) or not isinstance(seconds, (int, float)):
        return None
    return Entry(results=results, warnings=warnings, when=float(when), seconds=float(seconds))


def store(folder: Path, submission: Path, lab: int, k: str | None, results: list[dict], warnings: list[str],
          seconds: float) -> None:
    """Keep a lab's results (a grading that could not be keyed, or has nothing for the lab, is not kept)."""
    if k is None or not _well_formed(results, lab):
        return
    folder.mkdir(parents=True, exist_ok=True)
    p = _path(folder, submission, lab)
    tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps({"format": FORMAT, "key": k, "submission": str(submission), "lab": lab,
                               "when": time.time(), "seconds": seconds, "warnings": warnings,
                               "results": results}))
    tmp.rename(p)


def forget(folder: Path, submission: Path, lab: int) -> None:
    try:
        _path(folder, submission, lab).unlink()
    except OSError:
        pass
