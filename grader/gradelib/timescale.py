"""How long the grader waits, scaled to the machine it runs on.

Every wait of the grader (a program's output, its exit, a command in the VM, a whole test) is a
nominal time multiplied by scale().  grader/grade measures the machine once before grading (a fixed
piece of work, timed three times: a slow or loaded laptop takes longer) and passes the factor to the
test process in GRADER_TIME_SCALE, multiplied by --time-scale (the hostile corpus shortens every
wait with 0.1).  A VM lab raises the factor if the VM booted slowly.  The factor never goes below the
nominal times (1.0) and never above MAX_SCALE.
"""
from __future__ import annotations

import os
import statistics
import time

REFERENCE_SECONDS = 0.03  # calibrate()'s work on the project's 2-core machine, quiet
REFERENCE_BOOT = 2.0  # seconds from QEMU's start to the VM's agent there (make bench: about 1.6)
MAX_SCALE = 4.0

_base = float(os.environ.get("GRADER_TIME_SCALE", "1") or 1)  # what grader/grade measured, times --time-scale
_scale = _base


def scale() -> float:
    return _scale


def set_scale(value: float) -> None:
    global _scale, _base
    _scale = _base = value


def calibrate() -> float:
    """This machine's factor now: >= 1, larger when it is slower or busier than the reference."""
    def work() -> float:
        t = time.perf_counter()
        x = 0
        for i in range(300000):
            x += i * i % 7
        return time.perf_counter() - t

    measured = statistics.median(work() for _ in range(3))
    return min(MAX_SCALE, max(1.0, measured / REFERENCE_SECONDS))


def after_boot(boot_seconds: float) -> None:
    """A VM that booted slowly runs slowly: wait longer for it.  From the measured factor each time, never
    from what an earlier boot made of it: a lab that boots again and again (a restart after each Oops)
    keeps a bounded factor, at most MAX_SCALE times the measured one."""
    global _scale
    _scale = max(_scale, min(MAX_SCALE * max(_base, 1.0), _base * boot_seconds / REFERENCE_BOOT))
