"""The consumer window's defaults: the booster's explicit prefetch, else at least a broker-sized batch; none
without booster parameters (the broker contract suite's direct use)."""

from __future__ import annotations

from boostkernel_nats.broker import MIN_WINDOW, default_window

from boostkernel.params import BoostParams


def test_default_window() -> None:
    assert default_window(None) == 1
    assert default_window(BoostParams(queue="q", workers=1)) == MIN_WINDOW
    assert default_window(BoostParams(queue="q", workers=200)) == 200 + 400
    assert default_window(BoostParams(queue="q", workers=16, prefetch=7)) == 7
