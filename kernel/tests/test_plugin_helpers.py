"""Helpers the kernel offers plugins so that they do not each carry a copy of the same logic."""

from __future__ import annotations

from boostkernel.broker import consumer_window
from boostkernel.params import BoostParams


def test_consumer_window_covers_running_and_prefetched_tasks() -> None:
    assert consumer_window(None, 100) == 1  # direct use: exactly what fetch asks for
    assert consumer_window(None, 100, unbound=16) == 16
    assert consumer_window(BoostParams(queue="q", workers=1), 100) == 100
    assert consumer_window(BoostParams(queue="q", workers=200), 100) == 200 + 400  # workers + 2 x workers
    assert consumer_window(BoostParams(queue="q", workers=16, prefetch=7), 100) == 7
    assert consumer_window(BoostParams(queue="q", workers=16, prefetch=0), 100) == 1
