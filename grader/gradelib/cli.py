"""grader/grade: grade one submission and say what to do next.

usage: grader/grade [--lab N] [--task N] [-k EXPR] [--repeat N] [--fresh] [--verbose] [--out DIR] [PATH]

PATH is a folder with the labs (default: labs/, the student's working copy;
`grader/grade solutions` grades the reference solutions).  The submission is
copied into a scratch folder first: the grader never writes into it.

Writes DIR/results.json (Gradescope format), DIR/report.txt, DIR/junit.xml
(default DIR: grader/out).  Exit status: 0 only for full marks, 1 otherwise,
2 when grading itself could not run.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .sandbox import hidden_env, hide, inert, mode_line
from .timescale import calibrate

GRADER = Path(__file__).resolve().parent.parent
REPO = GRADER.parent
MAX_FILE = 4 << 20
MAX_TOTAL = 64 << 20
MAX_FILES = 5000


class GradeError(Exception):
    """Grading could not run (not: the submission is wrong)."""


class GradeTimeout(GradeError):
    """Grading the whole submission took longer than its limit."""


class Stopped(BaseException):
    """SIGTERM or SIGHUP reached the grader: stop everything and clean up."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def on_stop_signals() -> None:
    """SIGTERM and SIGHUP end the grader the way Ctrl-C does: the whole tree is stopped, scratch removed."""
    def stop(signum: int, frame: object) -> None:
        raise Stopped(signum)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    # Ctrl-C too, even when started from a shell script in the background: such a shell ignores SIGINT for
    # its background commands, and Python then leaves it ignored (seen when make test ran under `&`).
    signal.signal(signal.SIGINT, signal.default_int_handler)


_active: set[subprocess.Popen] = set()  # gradings running now (grade-all -j runs several)
_active_lock = threading.Lock()
_stopping = threading.Event()  # set by stop_all(): no grading starts after it


def stop_all() -> None:
    """Stop every grading still running (the batch is being stopped), and any a worker was about to start."""
    with _active_lock:
        _stopping.set()
        procs = list(_active)
    for proc in procs:
        stop_tree(proc, grace=5.0)


def stop_tree(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """End pytest and everything it started: SIGTERM to its session (it kills its sandboxes and VMs),
    then SIGKILL to whatever is left of its process group."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=wait)
            if sig == signal.SIGTERM:  # the leader is gone; its group may not be
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return
        except subprocess.TimeoutExpired:
            continue


# --- copying a submission safely -----------------------------------------------
def safe_copy(src: Path, dst: Path) -> list[str]:
    """Copy regular files and folders of `src` into `dst`.  Symbolic links that stay
    inside `src` are copied as the file they name; links that leave it, devices,
    FIFOs and oversized files are skipped.  Returns warnings."""
    warnings: list[str] = []
    total = count = 0
    root = src.resolve()
    dest = Path(os.path.realpath(dst))
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        rel = Path(dirpath).relative_to(src)
        # not .git, and never the copy itself (a scratch folder inside the submission, via TMPDIR)
        dirnames[:] = sorted(d for d in dirnames if d not in (".git", "__pycache__")
                             and not Path(os.path.realpath(Path(dirpath) / d)).is_relative_to(dest.parent))
        for d in list(dirnames):
            if (Path(dirpath) / d).is_symlink():
                warnings.append(f"skipped the folder link {rel / d}")
                dirnames.remove(d)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in sorted(filenames):
            p = Path(dirpath) / name
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                try:
                    target = p.resolve()
                except (RuntimeError, OSError):  # a loop (a -> b, b -> a): Python 3.11 raises RuntimeError
                    warnings.append(f"skipped {rel / name}: a symbolic link that loops")
                    continue
                if not target.is_relative_to(root) or not target.is_file():
                    warnings.append(f"skipped {rel / name}: a link to outside the submission")
                    continue
                st = os.stat(target)
                p = target
            if not stat.S_ISREG(st.st_mode):
                warnings.append(f"skipped {rel / name}: not a regular file")
                continue
            if st.st_size > MAX_FILE or total + st.st_size > MAX_TOTAL or count >= MAX_FILES:
                warnings.append(f"skipped {rel / name}: the submission is too large")
                continue
            shutil.copyfile(p, dst / rel / name)
            total += st.st_size
            count += 1
    return warnings


# --- chapters: task titles for the table and the next step ------------------------
TASK_RE = re.compile(r"^###\s+Task\s+(\d+):\s*(.+?)\s*\((\d+)\s+points?\)\s*$", re.M)


def task_titles(folder: str) -> dict[int, tuple[str, int]]:
    readme = REPO / "labs" / folder / "README.md"
    try:
        text = readme.read_text()
    except OSError:
        return {}
    return {int(n): (title, int(p)) for n, title, p in TASK_RE.findall(text)}


def lab_title(folder: str) -> str:
    try:
        first = (REPO / "labs" / folder / "README.md").read_text().splitlines()[0]
        # "# Lab 3: The fasync button" -> "The fasync button" (the table adds "Lab 3: ")
        return re.sub(r"^Lab\s+\d+\s*[:.-]\s*", "", first.lstrip("# ").strip())
    except (OSError, IndexError):
        return folder


# --- the run ---------------------------------------------------------------------
@dataclass
class Summary:
    score: int = 0
    max_score: int = 0
    results: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    text: str = ""
    seconds: float = 0.0  # the whole grading, wall time
    sandbox: str = ""  # how student code was contained (sandbox.mode_line())

    @property
    def full_marks(self) -> bool:
        """Every selected test passed (all the points; or, when only prerequisites were selected, all of them)."""
        return bool(self.results) and self.score == self.max_score and all(
            r["outcome"] == "passed" for r in self.results)


def combined(parts: list[Summary], sandbox: str) -> Summary:
    """One summary of gradings done apart (a lab each), their results in the order given."""
    s = Summary(sandbox=sandbox)
    for p in parts:
        s.results.extend(p.results)
        s.warnings.extend(w for w in p.warnings if w not in s.warnings)
    s.score = sum(x["points"] for x in s.results if x["outcome"] == "passed")
    s.max_score = sum(x["points"] for x in s.results)
    return s


def python_with_pytest() -> str:
    return sys.executable


_shared_libs: Path | None = None
_shared_lock = threading.Lock()


def shared_libs() -> Path | None:
    """A folder for the grader's own builds (libsigsafe, the harness libraries, the VM's helpers: lab.built_once)
    that every grading this process starts uses, so that each is compiled once, not once per grading (about a
    second of CPU each time); removed at exit.  None in the fallback as the grader's own user: there student
    code could write into it, and the next grading would run what it left."""
    global _shared_libs
    from .sandbox import bwrap_usable
    if not (bwrap_usable() or os.geteuid() == 0):
        return None
    with _shared_lock:
        if _shared_libs is None:
            _shared_libs = Path(tempfile.mkdtemp(prefix="grader-libs-"))
            os.chmod(_shared_libs, 0o755)
            import atexit
            atexit.register(shutil.rmtree, _shared_libs, True)
        return _shared_libs


def run_grading(submission: Path, lab: int | None = None, repeat: int = 1, junit: Path | None = None,
                progress=None, timeout: float | None = None, time_scale: float = 1.0, task: int | None = None,
                select: str | None = None, how: Rerun | None = None) -> Summary:
    """Grade `submission` and return the results; `progress(line)` is called per finished test.
    task: only that task's tests (with the lab's prerequisites); select: a pytest -k expression."""
    if not submission.is_dir():
        raise GradeError(f"{submission} is not a folder")
    work = Path(tempfile.mkdtemp(prefix="grade-"))
    os.chmod(work, 0o755)
    t0 = time.monotonic()
    try:
        copy = work / "submission"
        summary = Summary(warnings=[inert(w) for w in safe_copy(submission, copy)], sandbox=mode_line())
        results_json = work / "results.json"
        r, w = os.pipe()
        cmd = [python_with_pytest(), "-m", "pytest", "tests", "-q", "--tb=short", "-p", "no:cacheprovider",
               "--submission", str(copy), "--scratch", str(work / "scratch"), "--results-json", str(results_json),
               "--progress-fd", str(w), "--repeat", str(repeat)]
        (work / "scratch").mkdir()
        if lab is not None:
            cmd += ["--lab", str(lab)]
        if task is not None:
            cmd += ["--task", str(task)]
        if select:
            cmd += ["-k", select]
        if junit is not None:
            cmd += ["--junitxml", str(junit)]
        log = open(work / "pytest.log", "w+")
        hide(submission.resolve())
        env = dict(os.environ, GRADER_TIME_SCALE=str(time_scale * calibrate()), GRADER_HIDE=hidden_env())
        libs = shared_libs()
        if libs is not None:
            env["GRADER_LIBS"] = str(libs)
        with _active_lock:  # a batch being stopped starts nothing more
            if _stopping.is_set():
                os.close(w)
                os.close(r)
                raise GradeError("the batch is being stopped")
            proc = subprocess.Popen(cmd, cwd=GRADER, stdout=log, stderr=subprocess.STDOUT, pass_fds=[w],
                                    stdin=subprocess.DEVNULL, start_new_session=True, env=env)
            _active.add(proc)
        os.close(w)

        def pump() -> None:
            with os.fdopen(r) as f:
                for line in f:
                    if progress:
                        progress(line.rstrip("\n"))

        t = threading.Thread(target=pump, daemon=True)
        t.start()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_tree(proc)
            raise GradeTimeout(f"grading did not finish within {timeout:g} s")
        except BaseException:
            stop_tree(proc)
            raise
        finally:
            with _active_lock:
                _active.discard(proc)
        t.join(timeout=5)
        if proc.returncode not in (0, 1, 5) or not results_json.exists():
            log.seek(0)
            raise GradeError("the grader's tests could not run (pytest exit %d):\n%s"
                             % (proc.returncode, "\n".join(log.read().splitlines()[-25:])))
        if proc.returncode == 5 or not json.loads(results_json.read_text()):
            what = " ".join(w for w in (f"lab {lab}" if lab else "", f"task {task}" if task else "",
                                        f"-k {select}" if select else "") if w)
            raise GradeError(f"no graded tests were selected{f' for {what}' if what else ''}")
        summary.results = json.loads(results_json.read_text())
        for x in summary.results:  # inert already; again, in case a test bypassed the plugin
            x["message"] = inert(x["message"])
        summary.seconds = time.monotonic() - t0
        summary.score = sum(x["points"] for x in summary.results if x["outcome"] == "passed")
        summary.max_score = sum(x["points"] for x in summary.results)
        summary.text = render(summary, submission, how, all_messages=bool(task or select))
        return summary
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- what the student reads ---------------------------------------------------------
# Messages that say the kernel itself complained: shown under the lab, with their first lines.
KERNEL_TROUBLE = re.compile(r"^(the kernel oopsed during this test|the VM stopped during this test|the kernel printed "
                            r"a WARNING during this test|During this test the kernel|During this test a soft lockup|"
                            r"During this test the kernel found)")


def rerun_command(x: dict, how: Rerun) -> str:
    """One command that grades exactly this test again, the way the student ran the grader."""
    if how.make:
        sub = f" SUBMISSION={how.submission}" if how.submission else ""
        return f"make grade LAB={x['lab']} TEST={x['name']}{sub}"
    sub = f" {how.submission}" if how.submission else ""
    return f"grader/grade --lab {x['lab']} -k {x['name']}{sub}"


def task_command(lab: int, task: int, how: Rerun) -> str:
    """The command that grades one task of a lab, the way the student ran the grader."""
    if how.make:
        return f"make grade LAB={lab} TASK={task}" + (f" SUBMISSION={how.submission}" if how.submission else "")
    return f"grader/grade --lab {lab} --task {task}" + (f" {how.submission}" if how.submission else "")


def whole_lab_command(lab: int, how: Rerun) -> str:
    """The command that grades all of a lab, the way the student ran the grader."""
    if how.make:
        return f"make grade LAB={lab}" + (f" SUBMISSION={how.submission}" if how.submission else "")
    return f"grader/grade --lab {lab}" + (f" {how.submission}" if how.submission else "")


@dataclass
class Rerun:
    make: bool = False  # the student ran `make grade` (the Makefile says so in GRADE_VIA)
    submission: str = ""  # a folder other than labs/, as the student named it
    report: str = "grader/out/report.txt"


def _kernel_trouble(rs: list[dict]) -> list[str]:
    """What the kernel printed, once per lab and kind: the tests it happened in, and the lines that say
    where (the kernel's own frames and user-space addresses left out)."""
    seen: dict[tuple[str, ...], list[str]] = {}
    for x in rs:
        msg = x["message"]
        if x["outcome"] == "passed" or not KERNEL_TROUBLE.match(msg):
            continue
        lines = msg.splitlines()
        where = [ln.strip().lstrip("| ").strip() for ln in lines[1:]
                 if re.search(r"RIP: 0010|BUG:|WARNING:|Oops|\[[A-Za-z0-9_]+\]|panic", ln)
                 and not re.search(r"\[(wb_board)\]", ln)]
        key = (_first_line(msg).rstrip(":;"), *(where or [ln.strip() for ln in lines[1:4]])[:6])
        seen.setdefault(key, []).append(x["name"])
    out: list[str] = []
    for (head, *where), tests in seen.items():
        named = ", ".join(tests[:3]) + (f" and {len(tests) - 3} more" if len(tests) > 3 else "")
        out.append(f"  ! {head} ({named}):")
        out.extend(f"  !     {ln}" for ln in where)
    return out


# The harness's line when a test waited for output that never came (GuestProc.expect, Program.expect):
# what went wrong.  The line a test puts before it (expect's msg) is its scenario, what it did, not a cause.
WAITED_IN_VAIN = re.compile(r"Expected `.*` to print a line matching .*, but ")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _cause(msg: str) -> str:
    """The line of a failing test's message that says what went wrong: the harness's line when the test
    waited for output in vain (first, or second after the test's scenario), else the first line (the tests
    lead with the cause; a cause a test found itself leads, before the harness's line)."""
    lines = [ln.strip() for ln in msg.strip().splitlines()] or [""]
    return next((ln for ln in lines[:2] if WAITED_IN_VAIN.match(ln)), lines[0])


def _merge_numbers(lines: list[str]) -> str:
    """Lines that differ only in their numbers, as one: each number that differs becomes N."""
    parts = [_NUMBER.split(ln) for ln in lines]
    nums = [_NUMBER.findall(ln) for ln in lines]
    out = parts[0][0]
    for i, text in enumerate(parts[0][1:]):
        values = {n[i] for n in nums}
        out += (nums[0][i] if len(values) == 1 else "N") + text
    return out


def by_task(rs: list[dict]) -> dict[int, list[dict]]:
    """A lab's graded tests (not its prerequisites), by task, in their order."""
    tasks: dict[int, list[dict]] = {}
    for x in rs:
        if not x["prereq"]:
            tasks.setdefault(x["task"], []).append(x)
    return tasks


def shared_causes(rs: list[dict]) -> list[str]:
    """One line for each cause that several failing tests of a lab share: their messages' cause lines
    (_cause) compared with every number masked, so "got 3 of 10" and "got 4 of 10" are one cause."""
    groups: dict[str, list[str]] = {}
    for x in rs:
        if x["outcome"] != "passed" and not x["prereq"] and not KERNEL_TROUBLE.match(_first_line(x["message"])):
            line = _cause(x["message"])
            groups.setdefault(_NUMBER.sub("N", line), []).append(line)
    return [f"  ! {len(lines)} tests failed for one cause: {_merge_numbers(lines)}" for lines in groups.values()
            if len(lines) > 1]


def render(s: Summary, submission: Path, how: Rerun | None = None, all_messages: bool = False) -> str:
    """The table a student reads: points per lab and task, each failing test with the command that
    reruns it, what the kernel complained about, causes shared by several tests once, and the next step
    (with every failing test's message when all_messages, e.g. when one task was selected)."""
    how = how or Rerun()
    out: list[str] = []
    labs: dict[int, list[dict]] = {}
    for x in s.results:
        labs.setdefault(x["lab"], []).append(x)
    next_step = None
    prereq = None  # the first failing prerequisite (a build), the next step when no graded test failed
    # wide enough for the longest lab title, so every score stands in one column
    width = max([64] + [len(f"Lab {n}: {lab_title(rs[0]['folder'])}") + 2 for n, rs in labs.items()])
    for n in sorted(labs):
        rs = labs[n]
        folder = rs[0]["folder"]
        titles = task_titles(folder)
        got = sum(x["points"] for x in rs if x["outcome"] == "passed")
        tot = sum(x["points"] for x in rs)
        out.append(f"Lab {n}: {lab_title(folder)}".ljust(width) + f"{got:>4}/{tot}")
        for x in rs:
            if x["prereq"] and x["outcome"] != "passed":
                lines = x["message"].strip().splitlines() or [""]
                out.append(f"  ! {x['name']}: " + lines[0])
                if lines[0].endswith(":"):  # the first line announces a list (the compiler's errors): show its start
                    out.extend("    " + ln for ln in lines[1:4])
                if prereq is None:
                    prereq = (n, folder, x)
        out.extend(_kernel_trouble(rs))
        out.extend(shared_causes(rs))
        tasks = by_task(rs)
        for t in sorted(tasks):
            tr = tasks[t]
            title = titles.get(t, (f"Task {t}", 0))[0]
            tg = sum(x["points"] for x in tr if x["outcome"] == "passed")
            tt = sum(x["points"] for x in tr)
            mark = "ok " if tg == tt else "   "
            out.append(f"  {mark}Task {t}: {title}"[:width - 2].ljust(width) + f"{tg:>4}/{tt}")
            for x in tr:
                if x["outcome"] != "passed":
                    out.append(f"       x {x['name']}  ({x['points']} pt)")
                    out.append(f"           rerun: {rerun_command(x, how)}")
                    if next_step is None:
                        next_step = (n, folder, t, title, x)
        out.append("")
    out.append("Total".ljust(width) + f"{s.score:>4}/{s.max_score}")
    if s.sandbox:
        out.append(s.sandbox)
    if s.warnings:
        out.append("")
        out.extend(f"warning: {w}" for w in s.warnings[:10])
    out.append("")
    if next_step is None and prereq is not None:
        n, folder, x = prereq
        out.append(f"Next step: Lab {n}: {x['name']} failed (it carries no points, but the tests need it).")
        out.extend(_excerpt(x["message"], how.report))
        out.append(f"  Every test's message is in {how.report}.")
    elif next_step is None and all_messages:  # a task or a test was selected: the rest of the lab did not run
        out.append("Every selected test passes. The rest of the lab was not run: "
                   + " and ".join(f"`{whole_lab_command(n, how)}`" for n in sorted(labs)) + " grades all of it.")
    elif next_step is None:
        out.append("All tests pass: full marks.")
    else:
        n, folder, t, title, x = next_step
        out.append(f"Next step: Lab {n}, Task {t}: {title}.")
        out.append(f"  Read labs/{folder}/README.md, section \"Task {t}: {title}\".")
        failing = [y for y in s.results if y["outcome"] != "passed"] if all_messages else [x]
        for y in failing:
            out.append(f"  {'First failing test' if y is x and not all_messages else 'Failing test'}: {y['name']}")
            out.extend(_excerpt(y["message"], how.report))
        out.append(f"  Every test's message is in {how.report}.")
    return "\n".join(out)


CONSOLE_LINES = 30  # of one test's message on the console; report.txt has it all


def _excerpt(msg: str, report: str) -> list[str]:
    """A test's message for the console: cut at CONSOLE_LINES, saying so (a silent cut would hide the
    end of a block, such as a signal in the kernel's record)."""
    lines = msg.splitlines()
    if len(lines) <= CONSOLE_LINES:
        return ["  " + ln for ln in lines]
    return ["  " + ln for ln in lines[:CONSOLE_LINES - 1]] + [
        f"  ... ({len(lines) - CONSOLE_LINES + 1} more lines of this message in {report})"]


def _first_line(msg: str) -> str:
    return (msg.strip().splitlines() or [""])[0]


def gradescope(s: Summary) -> dict:
    """Gradescope's results.json (its autograder specification): the total, and per test its score,
    a number "LAB.TASK.N" that orders the tests, tags for lab and task, and what the student sees."""
    tests = []
    counters: dict[tuple[int, int], int] = {}
    for x in s.results:
        k = (x["lab"], x["task"])
        counters[k] = counters.get(k, 0) + 1
        tests.append({
            "name": f"Lab {x['lab']} task {x['task']}: {x['name']}" if not x["prereq"] else f"Lab {x['lab']}: {x['name']}",
            "number": f"{x['lab']}.{x['task']}.{counters[k]}",
            "score": x["points"] if x["outcome"] == "passed" else 0,
            "max_score": x["points"],
            "status": "passed" if x["outcome"] == "passed" else "failed",
            "output": x["message"],
            "output_format": "text",
            "tags": [f"lab {x['lab']}", "prerequisite" if x["prereq"] else f"task {x['task']}"],
            "visibility": "after_published" if x["hidden"] else "visible",
        })
    return {"score": s.score, "max_score": s.max_score, "execution_time": round(s.seconds), "output": s.text,
            "output_format": "text", "visibility": "visible", "stdout_visibility": "visible", "tests": tests}


def guest_kernel() -> str:
    """vm/fetch.py's one line on the guest kernel (version, Debian package, and whether the workbook was
    checked on it), '' when none is fetched."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from vm import fetch
    return fetch.guest_line()


def full_report(s: Summary) -> str:
    """The table, then every test with its whole message (report.txt, and each student's report)."""
    detail = [s.text, "", "Every test:"]
    for x in s.results:
        detail.append(f"[{x['outcome'].upper()}] lab {x['lab']} task {x['task']} {x['name']} ({x['points']} pt)")
        detail.extend("    " + ln for ln in x["message"].splitlines())
        detail.extend("    " + ln for ln in x.get("detail", "").splitlines())  # a VM test's timeline
    return "\n".join(detail) + "\n"


def _write_junit(s: Summary, path: Path) -> None:
    """JUnit XML of a grading made of several (one pytest run per lab): a test suite per lab."""
    import xml.etree.ElementTree as ET
    root = ET.Element("testsuites")
    for lab in sorted({x["lab"] for x in s.results}):
        rs = [x for x in s.results if x["lab"] == lab]
        suite = ET.SubElement(root, "testsuite", name=f"lab {lab}", tests=str(len(rs)),
                              failures=str(sum(x["outcome"] != "passed" for x in rs)))
        for x in rs:
            case = ET.SubElement(suite, "testcase", classname=f"lab{lab:02d}.task{x['task']}", name=x["name"],
                                 time=str(x.get("duration", 0.0)))
            if x["outcome"] != "passed":
                ET.SubElement(case, "failure", message=_first_line(x["message"])[:200]).text = x["message"]
    write_atomic(path, ET.tostring(root, encoding="unicode") + "\n")


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    tmp.rename(path)


def _shown_path(p: Path) -> str:
    """A path as the user would type it: relative to here when it is below here."""
    p = p.resolve()
    return str(p.relative_to(Path.cwd())) if p.is_relative_to(Path.cwd()) else str(p)


def main(argv: list[str] | None = None) -> int:
    on_stop_signals()
    ap = argparse.ArgumentParser(prog="grader/grade", description="Grade the workbook's labs.")
    ap.add_argument("path", nargs="?", default=str(REPO / "labs"), help="the labs to grade (default: labs/)")
    ap.add_argument("--lab", type=int, help="grade only lab N")
    ap.add_argument("--task", type=int, help="grade only task N (of --lab N), and show every failing test's message")
    ap.add_argument("-k", dest="select", metavar="EXPR", help="grade only the tests whose names match (pytest -k)")
    ap.add_argument("--repeat", type=int, default=1, help="run every test N times; pass only if all pass")
    ap.add_argument("--out", default=str(GRADER / "out"), help="folder for results.json, report.txt, junit.xml")
    ap.add_argument("--json", help="write the Gradescope results.json here instead")
    ap.add_argument("--junit", help="write JUnit XML here instead")
    ap.add_argument("--fresh", action="store_true",
                    help="grade every lab anew (by default a lab whose files, tests and grader have not changed "
                         "since its last grading shows the points it had then)")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="print every test as it finishes, and every failing lab's tests (the full view)")
    ap.add_argument("-j", "--jobs", type=int, default=0, metavar="N",
                    help="grade up to N labs side by side (default: as many as the machine has cores)")
    ap.add_argument("--quiet", action="store_true", help="no per-test progress")
    ap.add_argument("--time-scale", type=float, default=1.0, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    sub = Path(a.path).resolve()
    out = Path(a.out)
    hide(sub)
    hide(out.resolve())
    junit = Path(a.junit) if a.junit else out / "junit.xml"
    junit.parent.mkdir(parents=True, exist_ok=True)
    results = Path(a.json) if a.json else out / "results.json"
    try:
        results.unlink()  # a grader that cannot finish leaves no results: never zero points, never a pass
    except FileNotFoundError:
        pass
    how = Rerun(make=os.environ.get("GRADE_VIA") == "make",
                submission="" if sub == (REPO / "labs").resolve() else a.path,
                report=_shown_path(out / "report.txt"))
    whole_labs = not (a.task or a.select or a.repeat > 1)
    try:
        if a.verbose or not whole_labs:
            s = _grade_stream(a, sub, junit, how)
            cached: dict[int, float] = {}
        else:
            s, cached = _grade_labs(a, sub, out, junit, how)
    except GradeError as e:
        print(f"grade: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ngrade: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    except Stopped as e:
        print(f"\ngrade: {e}; everything it started is stopped", file=sys.stderr)
        return 128 + e.signum
    if a.verbose or not whole_labs:
        print()
        print(s.text)
    else:
        from .view import render_short
        print(render_short(s, how, cached))
    guest = guest_kernel()
    if "checked on" in guest or os.environ.get("WORKBOOK_KERNEL"):
        print(guest)  # another version of the series than the workbook's, or a guest chosen with KERNEL=
    write_atomic(results, json.dumps(dict(gradescope(s), extra_data={"guest_kernel": guest}), indent=1))
    write_atomic(out / "report.txt", (guest + "\n\n" if guest else "") + full_report(s))
    return 0 if s.full_marks else 1


def _grade_stream(a: argparse.Namespace, sub: Path, junit: Path, how: Rerun) -> Summary:
    """One grading, every test printed as it finishes (--verbose, --task, -k, --repeat): the full view."""
    what = f"lab {a.lab}" if a.lab else "all labs"
    print(f"Grading {what} in {sub}" + (f", every test {a.repeat} times" if a.repeat > 1 else ""), flush=True)

    def progress(line: str) -> None:
        if a.quiet:
            return
        if line.startswith("NOTE "):
            print(f"  ... {line[5:]}", flush=True)
            return
        if line.startswith("TEST "):
            return  # each test is printed when it ends
        mark, lab, task, pts, name = (line.split(" ", 4) + [""] * 5)[:5]
        print(f"  {mark} lab {lab} task {task:>2}  {pts:>6}  {name}", flush=True)

    return run_grading(sub, a.lab, a.repeat, junit.resolve(), progress, time_scale=a.time_scale, task=a.task,
                       select=a.select, how=how)


def _grade_labs(a: argparse.Namespace, sub: Path, out: Path, junit: Path,
                how: Rerun) -> tuple[Summary, dict[int, float]]:
    """The student's loop: each lab graded on its own, side by side, and a lab whose inputs have not
    changed since its last grading taken from the cache (gradelib/resultcache.py) unless --fresh.
    Returns the summary and, for the labs taken from the cache, when they were graded."""
    from . import resultcache
    from .view import Live
    t0 = time.monotonic()
    labs = [a.lab] if a.lab else resultcache.labs()
    folder = out / "cache"
    sandbox = mode_line()
    env = resultcache.environment(sandbox, a.time_scale)
    shared = resultcache.shared_digest()
    keys = {n: resultcache.key(sub, n, env, shared) for n in labs}
    entries = {}
    if not a.fresh:
        for n in labs:
            e = resultcache.load(folder, sub, n, keys[n])
            if e is not None:
                entries[n] = e
    todo = [n for n in labs if n not in entries]
    live = Live(quiet=a.quiet)
    what = f"lab {a.lab}" if a.lab else "all labs"
    print(f"Grading {what} in {_shown_path(sub)}"
          + (f" ({len(entries)} with files graded before: {', '.join(map(str, sorted(entries)))})" if entries and todo else "")
          + (": every lab's files were graded before" if not todo else ""), flush=True)
    # Side by side under bubblewrap (each grading in namespaces of its own); one at a time in the
    # fallback, where two gradings would share the sandbox's user (grader/README.md, Containment).
    jobs = a.jobs or (os.cpu_count() or 1)
    if not sandbox.startswith("Sandbox: bubblewrap"):
        jobs = 1
    graded: dict[int, Summary] = {}

    def one(n: int) -> Summary:
        live.say(n, "starting")

        def progress(line: str) -> None:
            if line.startswith("NOTE "):
                live.say(n, line[5:], plain=True)
            elif line.startswith("TEST "):
                live.testing(n, line[5:])
            else:
                live.test_done(n)

        s = run_grading(sub, n, 1, None, progress, time_scale=a.time_scale, how=how)
        live.finish(n, f"{s.score}/{s.max_score} in {s.seconds:.0f} s")
        return s

    from concurrent.futures import ThreadPoolExecutor
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(todo) or 1))) as pool:
            futures = {n: pool.submit(one, n) for n in todo}
            try:
                for n, f in futures.items():
                    graded[n] = f.result()
            except BaseException:
                for f in futures.values():
                    f.cancel()
                stop_all()
                raise
    finally:
        live.clear()
    for n, g in graded.items():
        resultcache.store(folder, sub, n, keys[n], g.results, g.warnings, g.seconds)
    s = combined([graded[n] if n in graded else Summary(results=entries[n].results, warnings=entries[n].warnings)
                  for n in labs], sandbox)
    s.seconds = time.monotonic() - t0
    s.text = render(s, sub, how)
    _write_junit(s, junit)
    return s, {n: e.when for n, e in entries.items()}


if __name__ == "__main__":
    sys.exit(main())
