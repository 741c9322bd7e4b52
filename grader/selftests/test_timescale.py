"""How long the grader waits (gradelib/timescale.py): the measured factor, raised by a slow boot, bounded."""
from __future__ import annotations

import pytest

from gradelib import timescale


@pytest.fixture
def measured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timescale, "_base", 1.0)
    monkeypatch.setattr(timescale, "_scale", 1.0)


def test_a_slow_boot_raises_the_factor(measured: None) -> None:
    timescale.after_boot(2 * timescale.REFERENCE_BOOT)
    assert timescale.scale() == 2.0


def test_boot_after_boot_the_factor_does_not_compound(measured: None) -> None:
    """A starter lab whose unplug tests restart the VM five times on a loaded machine: each slow boot
    once multiplied the factor again, and a 5 s wait became hours."""
    for _ in range(6):
        timescale.after_boot(3 * timescale.REFERENCE_BOOT)
    assert timescale.scale() == 3.0
    timescale.after_boot(100 * timescale.REFERENCE_BOOT)
    assert timescale.scale() == timescale.MAX_SCALE


def test_the_hostile_corpus_s_short_waits_stay_short(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timescale, "_base", 0.1)
    monkeypatch.setattr(timescale, "_scale", 0.1)
    for _ in range(6):
        timescale.after_boot(4 * timescale.REFERENCE_BOOT)
    assert timescale.scale() == pytest.approx(0.4)
