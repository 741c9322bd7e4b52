"""What grader/grade shows while it grades and after: the student's short view.

While grading: on a terminal, one line that is rewritten in place (which lab is building, booting,
being graded, how many tests are done); elsewhere (CI, a pipe) plain lines, a few per lab, and no
cursor movement.  After: the table of labs (a lab whose results came from the cache says since when),
then only the first unfinished lab's failures (tasks, each failing test as the command that reruns
it, its build errors and what the kernel complained about), then the next step with the first
failing test's message, cut to fit one screen (SCREEN_ROWS rows of SCREEN_COLS columns, wrapped
lines counted).  report.txt keeps everything; `--verbose` (make grade V=1) prints the full stream.
"""
from __future__ import annotations

import math
import os
import sys
import threading
import time
from typing import TextIO

from .cli import (Rerun, Summary, _kernel_trouble, by_task, lab_title, rerun_command, shared_causes, task_command,
                  task_titles)

SCREEN_ROWS = 60
SCREEN_COLS = 80
# Rows of the screen that are not the view's: the "Grading ..." line and make's "Error 1" line, and one
# for the prompt after it.
OTHER_ROWS = 3
MESSAGE_ROWS = 3  # of the first failing test's message, at least, in the short view


def rows(text: str, cols: int = SCREEN_COLS) -> int:
    """How many terminal rows `text` takes at `cols` columns."""
    return sum(max(1, math.ceil(len(ln) / cols)) for ln in text.split("\n"))


HEARTBEAT = 15.0  # off a terminal: a line at least this often (seconds) while a lab is still being graded


class Live:
    """The progress display: one line rewritten in place on a terminal, plain lines elsewhere.

    On a terminal the line shows, for each lab being graded, what it is doing (building, booting, the test
    that runs now) and for how long, redrawn every second.  Elsewhere a lab's steps are plain lines, and a
    lab silent for HEARTBEAT seconds gets one more line saying which test it is on."""

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None, quiet: bool = False,
                 heartbeat: float = HEARTBEAT) -> None:
        stream = stream or sys.stdout
        self.out = stream
        self.quiet = quiet
        self.tty = stream.isatty() if tty is None else tty
        self.lock = threading.Lock()
        self.state: dict[int, str] = {}  # lab -> what it is doing
        self.since: dict[int, float] = {}  # lab -> when it began doing it
        self.done: dict[int, int] = {}  # lab -> tests finished
        self.shown = False
        self.heartbeat = heartbeat
        self.last_line = time.monotonic()  # off a terminal: when the last plain line was printed
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()
        try:
            self.cols = os.get_terminal_size(stream.fileno()).columns if self.tty else SCREEN_COLS
        except (OSError, ValueError):
            self.cols = SCREEN_COLS
        if self.cols < 40:  # a terminal that does not say its size
            self.cols = SCREEN_COLS

    def _status(self, lab: int, now: float) -> str:
        n = self.done.get(lab, 0)
        took = int(now - self.since.get(lab, now))
        return (f"lab {lab}: {self.state[lab]}" + (f", {took} s" if took >= 2 else "")
                + (f" ({n} tests done)" if n else ""))

    def _draw(self) -> None:
        now = time.monotonic()
        line = " | ".join(self._status(lab, now) for lab in sorted(self.state))
        if len(line) > self.cols - 1:
            line = line[:self.cols - 4] + "..."
        self.out.write("\r\033[K" + line)
        self.out.flush()
        self.shown = True

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)
        self.last_line = time.monotonic()

    def _tick(self) -> None:
        """Every second: redraw the line (the time goes on), or off a terminal, after HEARTBEAT seconds of
        silence, say what each lab is on."""
        while not self._stop.wait(1.0):
            with self.lock:
                if not self.state:
                    continue
                if self.tty:
                    self._draw()
                elif time.monotonic() - self.last_line >= self.heartbeat:
                    now = time.monotonic()
                    for lab in sorted(self.state):
                        self._print("  " + self._status(lab, now))

    def _set(self, lab: int, what: str) -> None:
        prefix = f"lab {lab}: "  # the grader's notes name their lab, for a run by hand; the line names it already
        self.state[lab] = what[len(prefix):] if what.startswith(prefix) else what
        self.since[lab] = time.monotonic()
        if self._ticker is None and not self.quiet:
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()

    def say(self, lab: int, what: str, plain: bool = True) -> None:
        """Lab `lab` is now doing `what` (a plain line off a terminal when `plain`)."""
        with self.lock:
            self._set(lab, what)
            if self.quiet:
                return
            if self.tty:
                self._draw()
            elif plain:
                self._print(f"  lab {lab}: {self.state[lab]}")

    def testing(self, lab: int, name: str) -> None:
        """Lab `lab` runs the test `name` now (on the line; off a terminal only the heartbeat says so)."""
        with self.lock:
            self._set(lab, name)
            if self.tty and not self.quiet:
                self._draw()

    def test_done(self, lab: int) -> None:
        with self.lock:
            self.done[lab] = self.done.get(lab, 0) + 1
            if self.state.get(lab, "starting") == "starting":
                self._set(lab, "grading")
            if self.tty and not self.quiet:
                self._draw()

    def finish(self, lab: int, what: str) -> None:
        """Lab `lab` is finished: it leaves the live line (off a terminal: one line says so)."""
        with self.lock:
            self.state.pop(lab, None)
            self.since.pop(lab, None)
            if self.quiet:
                return
            if self.tty:
                self._draw() if self.state else self._erase()
            else:
                self._print(f"  lab {lab}: {what}")

    def clear(self) -> None:
        """The grading is over: no more redraws, and the line is erased."""
        self._stop.set()
        self._erase()

    def _erase(self) -> None:
        if self.tty and self.shown:
            self.out.write("\r\033[K")
            self.out.flush()
            self.shown = False


def _lab_line(n: int, folder: str, got: int, tot: int, width: int, note: str = "") -> str:
    """`Lab N: title`, a note at the right of the title (cut to make room), the points in their column."""
    title = f"Lab {n}: {lab_title(folder)}"
    room = width - 1 - (len(note) + 2 if note else 0)
    if len(title) > room:
        title = title[:room - 3] + "..."
    return (title + (f"  {note}" if note else "")).ljust(width) + f"{got:>4}/{tot}"


def render_short(s: Summary, how: Rerun, cached: dict[int, float] | None = None, cols: int = SCREEN_COLS,
                 budget: int = SCREEN_ROWS - OTHER_ROWS) -> str:
    """The short view of a grading (see the module's docstring).  cached: lab -> when its results were
    graded, for the labs shown from the cache."""
    cached = cached or {}
    labs: dict[int, list[dict]] = {}
    for x in s.results:
        labs.setdefault(x["lab"], []).append(x)
    width = cols - 12  # the points column: 12 columns from the right edge
    head: list[str] = []
    first = None  # the first lab not finished
    for n in sorted(labs):
        rs = labs[n]
        got = sum(x["points"] for x in rs if x["outcome"] == "passed")
        tot = sum(x["points"] for x in rs)
        note = ("same files as at " + time.strftime("%H:%M", time.localtime(cached[n]))) if n in cached else ""
        head.append(_lab_line(n, rs[0]["folder"], got, tot, width, note))
        if first is None and any(x["outcome"] != "passed" for x in rs):
            first = n
    head.append("Total".ljust(width) + f"{s.score:>4}/{s.max_score}")
    if s.sandbox and not s.sandbox.startswith("Sandbox: bubblewrap"):
        head.append(s.sandbox)  # the fallback is said on the console: it contains less
    head.extend(f"warning: {w}" for w in s.warnings[:3])
    if first is None:
        return "\n".join(head + ["", "All tests pass: full marks."])
    rs = labs[first]
    folder = rs[0]["folder"]
    titles = task_titles(folder)
    body = ["", f"Lab {first}: what still fails (each line reruns one test):"]
    prereq = None
    for x in rs:
        if x["prereq"] and x["outcome"] != "passed":
            lines = x["message"].strip().splitlines() or [""]
            body.append(f"  ! {x['name']}: {lines[0]}")
            prereq = prereq or x
    body.extend(_kernel_trouble(rs))
    body.extend(shared_causes(rs))
    tasks = by_task(rs)
    step = None
    blocks: list[tuple[list[str], list[str]]] = []  # per task with failures: its lines, and its line when cut
    for t in sorted(tasks):
        failing = [x for x in tasks[t] if x["outcome"] != "passed"]
        if not failing:
            continue
        title = titles.get(t, (f"Task {t}", 0))[0]
        tg = sum(x["points"] for x in tasks[t] if x["outcome"] == "passed")
        tt = sum(x["points"] for x in tasks[t])
        line = f"  Task {t}: {title}"[:width - 1].ljust(width) + f"{tg:>4}/{tt}"
        blocks.append(([line, *(f"    {rerun_command(x, how)}" for x in failing)],
                       [line, f"    {len(failing)} failing tests: {task_command(first, t, how)}"]))
        step = step or (t, title, failing[0])
    tail: list[str] = [""]
    if step is None and prereq is not None:
        tail.append(f"Next step: Lab {first}: {prereq['name']} failed (it carries no points, but the tests need it).")
        msg = prereq["message"]
    elif step is not None:
        t, title, x = step
        tail += [f"Next step: Lab {first}, Task {t}: {title}.",
                 f"  Read labs/{folder}/README.md, section \"Task {t}: {title}\".",
                 f"  First failing test: {x['name']}"]
        msg = x["message"]
    else:
        msg = ""
    end = [f"  Every message: {how.report}; every test as it runs: "
           + ("make grade V=1" if how.make else "grader/grade --verbose") + "."]
    if cached:
        end.append("  Labs marked \"same files\" were not graded again: "
                   + ("make grade FRESH=1" if how.make else "grader/grade --fresh") + " grades every lab anew.")
    # Too many failing tests for one screen (an untouched lab): the last tasks' tests give way to one line per
    # task that says how to grade that task, until the rest and MESSAGE_ROWS of the message fit.
    for i in range(len(blocks) - 1, 0, -1):
        if rows("\n".join(head + body + [ln for b in blocks for ln in b[0]] + tail + end), cols) + MESSAGE_ROWS <= budget:
            break
        blocks[i] = (blocks[i][1], blocks[i][1])
        body[1] = f"Lab {first}: what still fails (each command reruns one test, or one task's tests):"
    body += [ln for b in blocks for ln in b[0]]
    # The message gets the rows that are left; a cut says so.
    left = budget - rows("\n".join(head + body + tail + end), cols)
    shown: list[str] = []
    lines = msg.strip().splitlines()
    for i, ln in enumerate(lines):
        more = len(lines) - i
        need = rows("  " + ln, cols) + (1 if more > 1 else 0)
        if need > left:
            shown.append(f"  ... ({more} more lines of this message in {how.report})")
            break
        shown.append("  " + ln)
        left -= rows("  " + ln, cols)
    return "\n".join(head + body + tail + shown + end)
