"""run_autograder's work in a Gradescope container: grade /autograder/submission, write
/autograder/results/results.json.

usage: python3 -m gradelib.autograder [--root ROOT] [--labs "1 2"] [--select EXPR] [--check]

ROOT is $AUTOGRADER_ROOT, else /autograder (Gradescope's layout: source/ holds the archive,
submission/ the student's files, results/ what we write).  The submission is a folder laid out
like labs/ (the lab folders at its top, in labs/, or in one top-level folder: a whole clone of the
student's repository works), or one archive of it (.zip, .tar.gz, .tgz, .tar), unpacked with the
checks grade-all applies.  Only the lab folders are graded, with this archive's own grader: a
grader/, Makefile or anything else that came with the submission is never run.

The labs to grade are a setting of the archive (source/autograder.conf, LABS="1 2 3"), and so is
the time limit for the whole grading (TIME_LIMIT, seconds: stop before Gradescope does, and say so).

A submission that cannot be graded (empty, wrong layout, unsafe archive) gets a results.json with
no points and the reason; a grader that cannot run writes no results.json (Gradescope then reports
a failed autograder to the instructor) and exits with status 2.

--check: what setup.sh runs once when Gradescope builds the image: builds the button board and a
module against the VM kernel's headers, boots the VM and loads the module, builds the reference
driver of each lab graded against one (and so fills the build caches the gradings reuse: a grading
builds no reference driver, so no command line shows its sources).

What is derived from the solutions (PRIVATE: grader/reference/, workbook.tar.gz that carries it, the
build cache that holds the reference driver built) is made root's alone by --check and again before
each grading: student code runs as another user and, where there are no namespaces (Gradescope's
container), sees the file system with that user's rights.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shlex
import stat
import sys
import tempfile
from pathlib import Path

from . import batch, sandbox
from .cli import (GradeError, REPO, Rerun, Stopped, Summary, gradescope, on_stop_signals, render, run_grading,
                  write_atomic)
from .sandbox import hide, inert, mode_line

DEFAULT_TIME_LIMIT = 540.0  # Gradescope's default limit is 10 minutes
REFERENCES = REPO / "grader" / "reference"  # earlier labs' drivers, generated from the solutions
BUILD_CACHE = REPO / "vm" / "cache" / "build"  # the board and the modules built (the reference driver too)


def private_paths(root: Path) -> list[Path]:
    """What student code must not read: what is derived from the solutions, and what carries it."""
    return [REFERENCES, BUILD_CACHE, root / "source" / "workbook.tar.gz"]


def keep_private(root: Path) -> None:
    """Make private_paths() root's alone (0700 folders, 0600 files), every file below them too."""
    for top in private_paths(root):
        try:
            st = os.lstat(top)
        except FileNotFoundError:
            continue
        todo = [(top, st)]
        while todo:
            p, st = todo.pop()
            if stat.S_ISLNK(st.st_mode):
                continue
            os.chmod(p, stat.S_IMODE(st.st_mode) & 0o700)
            if stat.S_ISDIR(st.st_mode):
                with os.scandir(p) as it:
                    todo += [(Path(e.path), e.stat(follow_symlinks=False)) for e in it]


def read_conf(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (shell syntax, as setup.sh and run_autograder read them too)."""
    conf: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return conf
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        words = shlex.split(value)
        conf[key.strip()] = " ".join(words)
    return conf


def available_labs() -> list[int]:
    """The labs this grader has tests for (grader/tests/test_labNN_*.py)."""
    return sorted({int(m.group(1)) for p in (REPO / "grader" / "tests").glob("test_lab*_*.py")
                   if (m := re.match(r"test_lab(\d+)_", p.name))})


def find_submission(sub: Path, scratch: Path) -> Path:
    """The folder holding the lab folders; an archive is unpacked into scratch first.  Raises batch.Malformed."""
    if not sub.is_dir():
        raise batch.Malformed("there is no submission folder")
    entries = [e for e in sub.iterdir() if not e.name.startswith(".") and e.name != "__MACOSX"]
    try:
        return batch.find_labs_root(sub)
    except batch.Malformed:
        archives = [e for e in entries if e.is_file() and e.name.endswith(batch.ARCHIVES)]
        if len(archives) != 1:
            raise
    batch.extract(archives[0], scratch)
    return batch.find_labs_root(scratch)


def grade(root: Path, labs: list[int], time_limit: float, select: str | None = None) -> Summary:
    """Grade every selected lab of the submission under root (select: only the tests a pytest -k
    expression matches); one Summary for all of them."""
    with tempfile.TemporaryDirectory(prefix="autograder-") as tmp:
        labs_root = find_submission(root / "submission", Path(tmp))
        hide((root / "submission").resolve())
        hide((root / "results").resolve())
        how = Rerun(make=True, report="the tests' results below")
        every = available_labs()
        total = Summary(sandbox=mode_line())
        if set(every) <= set(labs):  # all of them: one run
            parts = [run_grading(labs_root, None, timeout=time_limit, how=how, select=select)]
        else:
            parts = []
            for n in labs:
                left = time_limit - total.seconds
                s = run_grading(labs_root, n, timeout=max(left, 1.0), how=how, select=select)
                total.seconds += s.seconds
                parts.append(s)
        for s in parts:
            total.results += s.results
            total.warnings += [w for w in s.warnings if w not in total.warnings]
        total.seconds = sum(s.seconds for s in parts)
        total.score = sum(s.score for s in parts)
        total.max_score = sum(s.max_score for s in parts)
        total.text = render(total, labs_root, how)
        return total


def malformed(why: str) -> dict:
    """results.json for a submission that cannot be graded: no points, and the reason."""
    text = inert(f"Not graded: {why}.\nSubmit the lab folders (01-signal/, 02-sigaction/, ...) as they are in "
                 f"labs/, or one .zip or .tar.gz of them.")
    return {"score": 0, "execution_time": 0, "output": text, "output_format": "text", "visibility": "visible",
            "stdout_visibility": "visible", "tests": []}


def reference_drivers(labs: list[int]) -> list[tuple[str, str]]:
    """(folder of grader/reference, module name) for each of `labs` graded against an earlier lab's driver
    (its tests' LAB.reference)."""
    found: set[tuple[str, str]] = set()
    for p in sorted((REPO / "grader" / "tests").glob("test_lab*_*.py")):
        m = re.match(r"test_lab(\d+)_", p.name)
        if not m or int(m.group(1)) not in labs:
            continue
        spec = importlib.util.spec_from_file_location(f"_autograder_{p.stem}", p)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        lab = getattr(module, "LAB", None)
        if getattr(lab, "reference", ""):
            found.add((lab.reference, lab.reference_module))  # type: ignore[union-attr]
    return sorted(found)


def check(root: Path, labs: list[int]) -> int:
    """setup.sh's check: the toolchain, the kernel headers and QEMU work together here."""
    sys.path.insert(0, str(REPO))
    from vm.kmod import KmodError, build_as, build_board, build_module
    from vm.machine import Machine, VMError
    try:
        board = build_board(say=print)
        with tempfile.TemporaryDirectory(prefix="autograder-check-") as tmp:
            b = build_module(REPO / "vm" / "smoke", Path(tmp) / "smoke")
            if not b.ok or "hello" not in b.kos:
                print(f"check: the smoke module does not build:\n{b.summary()}", file=sys.stderr)
                return 1
            with Machine(files={"/lab/hello.ko": b.kos["hello"], "/lab/wb_board.ko": board["wb_board.ko"]}) as m:
                m.check("insmod /lab/hello.ko && rmmod hello && insmod /lab/wb_board.ko", timeout=60)
                print(f"check: the VM booted in {m.boot_seconds:.1f} s and loaded a module built here")
            for folder, name in reference_drivers(labs):  # built now, so that no grading builds them
                build_as(REFERENCES / folder, Path(tmp) / folder, name)
                print(f"check: built the reference driver grader/reference/{folder} as {name}.ko")
    except (KmodError, VMError) as e:
        print(f"check: {e}", file=sys.stderr)
        return 1
    # A program run contained, as the sandbox's user (setpriv must be allowed to drop to it here).
    with tempfile.TemporaryDirectory(prefix="autograder-check-") as tmp:
        os.chmod(tmp, 0o755)
        run = Path(tmp) / "run"
        sandbox.make_writable(run)
        c = sandbox.Contained(["/bin/sh", "-c", "id -u"], cwd=run, writable=[run], env={"PATH": "/usr/bin:/bin"},
                              limits=sandbox.Limits(), stdin=False)
        ex = c.wait(timeout=30)
        if ex.exitcode != 0 or ex.stdout.decode().strip() != str(sandbox.sandbox_uid()):
            print(f"check: a contained program did not run as uid {sandbox.sandbox_uid()}: status {ex.exitcode}, "
                  f"{sandbox.clean_text(ex.stdout + ex.stderr).strip()[:500]}", file=sys.stderr)
            return 1
    print(f"check: a contained program ran as uid {sandbox.sandbox_uid()}")
    keep_private(root)
    print(f"check: root's alone: {', '.join(str(p) for p in private_paths(root) if p.exists())}")
    print(mode_line())
    return 0


def main(argv: list[str] | None = None) -> int:
    on_stop_signals()
    ap = argparse.ArgumentParser(prog="run_autograder", description="Grade a Gradescope submission.")
    ap.add_argument("--root", default=os.environ.get("AUTOGRADER_ROOT", "/autograder"))
    ap.add_argument("--labs", help='the labs to grade, e.g. "1 2" (default: the archive\'s LABS setting)')
    ap.add_argument("--select", help="only the tests this pytest -k expression matches (the grader's own tests of "
                                     "the archive; Gradescope passes no arguments)")
    ap.add_argument("--check", action="store_true", help="check the setup instead of grading")
    a = ap.parse_args(argv)
    root = Path(a.root)
    conf = read_conf(root / "source" / "autograder.conf")
    words = (a.labs or conf.get("LABS", "")).replace(",", " ").split()
    labs = sorted({int(w) for w in words}) if words else available_labs()
    if a.check:
        return check(root, labs)
    try:
        keep_private(root)  # as --check left it, whatever changed since
    except OSError as e:  # never grade with the solutions in student code's reach
        print(f"run_autograder: cannot make {e.filename} root's alone: {e.strerror}", file=sys.stderr)
        return 2
    time_limit = float(conf.get("TIME_LIMIT", DEFAULT_TIME_LIMIT))
    results = root / "results" / "results.json"
    try:
        results.unlink()
    except FileNotFoundError:
        pass
    print(f"Grading lab{'s' if len(labs) > 1 else ''} {', '.join(map(str, labs))} of {root / 'submission'}",
          flush=True)
    try:
        s = grade(root, labs, time_limit, a.select)
    except batch.Malformed as e:
        print(f"run_autograder: not graded: {e}")
        write_atomic(results, json.dumps(malformed(str(e)), indent=1))
        return 0
    except GradeError as e:
        print(f"run_autograder: {e}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Stopped) as e:
        print(f"run_autograder: stopped ({e or 'interrupted'}); no results", file=sys.stderr)
        return 2
    print(s.text, flush=True)
    write_atomic(results, json.dumps(gradescope(s), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
