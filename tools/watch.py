#!/usr/bin/env python3
"""make watch LAB=N: grade lab N again each time one of its files is saved.

usage: tools/watch.py --lab N [--test EXPR] [--out DIR] [SUBMISSION]

Grades the lab once (grader/grade's short view, the cache included), then waits on the kernel's
inotify for a file of the lab's folder to be written, created, moved in or removed; a burst of
saves (an editor writes a file in several steps) is one change.  Build products (objects, modules,
the programs a `make` in the folder leaves) and editors' swap and backup files are not changes.
On a terminal the screen is cleared before each grading.  Ctrl-C (or SIGTERM) stops the grading
under way and everything it started, and then the watch itself, with status 0.
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import select
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IN_MODIFY, IN_CLOSE_WRITE, IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x2, 0x8, 0x40, 0x80, 0x100, 0x200
IN_ISDIR, IN_NONBLOCK, IN_CLOEXEC = 0x40000000, 0o4000, 0o2000000
EVENTS = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE
QUIET = 0.3  # seconds without an event that end a burst of saves
IGNORED_SUFFIXES = (".o", ".ko", ".mod", ".mod.c", ".cmd", ".symvers", ".order", ".swp", ".swx", ".tmp", "~")


def die(msg: str) -> None:
    print(f"watch: {msg}", file=sys.stderr)
    sys.exit(2)


class Inotify:
    """The kernel's inotify(7) on a folder and its subfolders, through libc."""

    def __init__(self) -> None:
        self.libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self.fd = self.libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            die(f"inotify_init1: {os.strerror(ctypes.get_errno())}")
        self.dirs: dict[int, Path] = {}

    def add_tree(self, top: Path) -> None:
        for d in [top, *(p for p in top.rglob("*") if p.is_dir() and not p.is_symlink())]:
            wd = self.libc.inotify_add_watch(self.fd, os.fsencode(d), EVENTS)
            if wd < 0:
                die(f"inotify_add_watch {d}: {os.strerror(ctypes.get_errno())}")
            self.dirs[wd] = d

    def changes(self) -> list[Path]:
        """The files named by the events waiting now (new folders are watched too)."""
        out: list[Path] = []
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                return out
            i = 0
            while i < len(buf):
                wd, mask, _, size = struct.unpack_from("iIII", buf, i)
                name = buf[i + 16:i + 16 + size].rstrip(b"\0").decode(errors="replace")
                i += 16 + size
                d = self.dirs.get(wd)
                if d is None or not name:
                    continue
                p = d / name
                if mask & IN_ISDIR:
                    if mask & (IN_CREATE | IN_MOVED_TO) and p.is_dir():
                        self.add_tree(p)
                    continue
                out.append(p)

    def wait(self, timeout: float | None) -> bool:
        return bool(select.select([self.fd], [], [], timeout)[0])


def counts(p: Path) -> bool:
    """A save of a source, not a build product or an editor's scratch file."""
    n = p.name
    if n.startswith(".") or n.startswith("#") or n.endswith(IGNORED_SUFFIXES) or n == "4913":
        return False
    try:
        with open(p, "rb") as f:
            return f.read(4) != b"\x7fELF"
    except OSError:
        return True  # removed: that is a change too


def main() -> int:
    ap = argparse.ArgumentParser(prog="make watch", description="Grade a lab again each time one of its files is saved.")
    ap.add_argument("--lab", type=int, required=True, help="the lab to watch")
    ap.add_argument("--test", help="only the tests whose names match (pytest -k), as make grade TEST=")
    ap.add_argument("--out", help="grader/grade's --out (default: grader/out)")
    ap.add_argument("submission", nargs="?", default="labs", help="the folder with the labs (default: labs)")
    a = ap.parse_args()
    sub = Path(a.submission)
    folders = sorted(sub.glob(f"{a.lab:02d}-*"))
    if not folders:
        die(f"{sub} has no folder for lab {a.lab} ({a.lab:02d}-...)")
    ino = Inotify()
    for f in folders:
        ino.add_tree(f)
    argv = [str(REPO / "grader" / "grade"), "--lab", str(a.lab), *(["-k", a.test] if a.test else []),
            *(["--out", a.out] if a.out else []), str(sub)]
    env = dict(os.environ, GRADE_VIA=os.environ.get("GRADE_VIA", "make"))
    tty = sys.stdout.isatty()
    stop = {"signum": 0}

    def on_stop(signum: int, frame: object) -> None:
        stop["signum"] = signum
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    where = ", ".join(str(f) for f in folders)
    while True:
        if tty:
            sys.stdout.write("\033[2J\033[H")
        # its own session: Ctrl-C reaches the watch, which stops the grading (and all it started) itself
        child = subprocess.Popen(argv, env=env, start_new_session=True)
        try:
            child.wait()
            print(f"\nwatch: waiting for a change in {where} (Ctrl-C stops)", flush=True)
            ino.changes()  # what the grading's own copy or a build did meanwhile is not a save
            while True:
                ino.wait(None)
                saved = [p for p in ino.changes() if counts(p)]
                while ino.wait(QUIET):  # the rest of the burst
                    saved += [p for p in ino.changes() if counts(p)]
                if saved:
                    break
            print(f"watch: {', '.join(sorted({p.name for p in saved}))} changed: grading lab {a.lab} again", flush=True)
            time.sleep(0.05)
        except KeyboardInterrupt:
            if child.poll() is None:
                print("\nwatch: stopping the grading under way", flush=True)
                try:
                    os.killpg(child.pid, signal.SIGTERM)  # the grader stops its sandboxes and VMs
                except ProcessLookupError:
                    pass
                try:
                    child.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(child.pid, signal.SIGKILL)
                    child.wait()
            print("watch: stopped", flush=True)
            return 0


if __name__ == "__main__":
    sys.exit(main())
