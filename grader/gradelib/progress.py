"""What the grader is doing, for the console: one line per step that can take more than a second or two.

The test process writes `NOTE text` lines to grader/grade's progress pipe (the same pipe that carries
one line per finished test); grader/grade prints them as `  ... text`.  Without a pipe (a test run by
hand) the note goes to stderr.
"""
from __future__ import annotations

import sys
import threading
from typing import TextIO

_out: TextIO | None = None
_lock = threading.Lock()


def set_channel(out: TextIO | None) -> None:
    global _out
    _out = out


def note(text: str) -> None:
    """Say what is happening now (building, booting...)."""
    with _lock:
        if _out is not None:
            _out.write(f"NOTE {text}\n")
            _out.flush()
        else:
            print(f"grader: {text}", file=sys.stderr, flush=True)
