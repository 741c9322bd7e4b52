#!/usr/bin/env python3
"""Derive the student's starter code in labs/ from the reference solutions.

The solutions are the one source of truth.  In a solution file, the student's
part of task N is marked like this:

        /* TODO 3: install handle_term for SIGTERM with sigaction(2). */
        ...solution lines...
        //> (void)sig;
        /* END TODO */

In the starter the TODO line stays, the solution lines go, and lines starting
with `//> ` (after indentation) become code, so that the starter still builds
with -Werror and runs.  Makefiles and scripts use `# TODO N:`, `# END TODO`
and `#> `.  Files without markers are copied as they are.  labs/NN-name/README.md
(the chapter) is written by hand and never touched.

usage: tools/mkstarter.py [--check]     (--check: report drift, change nothing)
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOLUTIONS = REPO / "solutions"
LABS = REPO / "labs"
HAND_WRITTEN = {"README.md"}

C_MARK = (re.compile(r"^\s*/\*\s*TODO\s+\d+[a-z]?:"), re.compile(r"^\s*/\*\s*END TODO\s*\*/\s*$"),
          re.compile(r"^(\s*)//> ?(.*)$"))
SH_MARK = (re.compile(r"^\s*#\s*TODO\s+\d+[a-z]?:"), re.compile(r"^\s*#\s*END TODO\s*$"),
           re.compile(r"^(\s*)#> ?(.*)$"))


class MarkerError(Exception):
    pass


def markers_for(path: Path):
    if path.suffix in (".c", ".h"):
        return C_MARK
    if path.name == "Makefile" or path.suffix in (".mk", ".sh") or path.name == "Kbuild":
        return SH_MARK
    return None


def starter_text(path: Path, text: str) -> str:
    marks = markers_for(path)
    if marks is None:
        return text
    todo, end, keep = marks
    out: list[str] = []
    inside_since: int | None = None
    in_comment = False  # the TODO's C comment goes on over several lines
    for no, line in enumerate(text.splitlines(keepends=True), 1):
        if in_comment:
            out.append(line)
            in_comment = "*/" not in line
            continue
        if inside_since is None:
            if end.match(line):
                raise MarkerError(f"{path}:{no}: END TODO without a TODO")
            out.append(line)
            if todo.match(line):
                inside_since = no
                in_comment = marks is C_MARK and "*/" not in line
            continue
        if todo.match(line):
            raise MarkerError(f"{path}:{no}: TODO inside the TODO of line {inside_since}")
        if end.match(line):
            inside_since = None
            continue
        m = keep.match(line)
        if m:
            out.append(m.group(1) + m.group(2) + "\n")
    if inside_since is not None:
        raise MarkerError(f"{path}:{inside_since}: TODO without END TODO")
    return "".join(out)


def expected_files() -> dict[Path, str]:
    """labs/ path -> content, for every file derived from solutions/."""
    files: dict[Path, str] = {}
    for lab in sorted(p for p in SOLUTIONS.iterdir() if p.is_dir()):
        for src in sorted(p for p in lab.rglob("*") if p.is_file()):
            rel = src.relative_to(SOLUTIONS)
            if rel.name in HAND_WRITTEN or _ignored(src):
                continue
            files[LABS / rel] = starter_text(src, src.read_text())
    for src in sorted(p for p in SOLUTIONS.iterdir() if p.is_file() and p.name not in HAND_WRITTEN):
        files[LABS / src.name] = src.read_text()
    return files


def stale_files(expected: dict[Path, str]) -> list[Path]:
    """Files in a lab folder of labs/ that no solution file produces."""
    stale = []
    for lab in sorted(p for p in SOLUTIONS.iterdir() if p.is_dir()):
        mine = LABS / lab.name
        if not mine.is_dir():
            continue
        for p in sorted(q for q in mine.rglob("*") if q.is_file()):
            if p not in expected and p.name not in HAND_WRITTEN and not _ignored(p):
                stale.append(p)
    return stale


BUILD_NAMES = {"Module.symvers", "modules.order"}


def _ignored(p: Path) -> bool:
    """Build products a `make` leaves behind: neither sources nor drift."""
    return (p.suffix in (".o", ".ko", ".so", ".mod", ".cmd") or p.name.endswith(".mod.c")
            or p.name in BUILD_NAMES or "__pycache__" in p.parts or "build" in p.parts
            or p.name.startswith(".")
            or (p.is_file() and bool(p.stat().st_mode & 0o111) and p.suffix == ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="report drift between labs/ and solutions/, change nothing")
    a = ap.parse_args()
    try:
        expected = expected_files()
    except MarkerError as e:
        print(f"mkstarter: {e}", file=sys.stderr)
        return 1
    drift = [p for p, text in expected.items() if not p.is_file() or p.read_text() != text]
    stale = stale_files(expected)
    if a.check:
        for p in drift:
            print(f"mkstarter: {p.relative_to(REPO)} differs from what solutions/ generates", file=sys.stderr)
        for p in stale:
            print(f"mkstarter: {p.relative_to(REPO)} has no source in solutions/", file=sys.stderr)
        if drift or stale:
            print("mkstarter: run `make starter` to regenerate labs/ from solutions/", file=sys.stderr)
            return 1
        print(f"mkstarter: labs/ matches solutions/ ({len(expected)} files)")
        return 0
    for p in drift:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(expected[p])
        src = SOLUTIONS / p.relative_to(LABS)
        if src.exists():
            p.chmod(src.stat().st_mode & 0o777)
        print(f"mkstarter: wrote {p.relative_to(REPO)}")
    for p in stale:
        print(f"mkstarter: warning: {p.relative_to(REPO)} has no source in solutions/ (left alone)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
