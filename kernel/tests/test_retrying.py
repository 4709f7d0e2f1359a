"""boostkernel.retrying: the one backoff with jitter every broker plugin's retry and reconnect loops use."""

from __future__ import annotations

import random

import pytest

from boostkernel import Backoff, backoff_delay


def test_delays_double_up_to_the_cap_with_jitter_inside_its_bounds() -> None:
    random.seed(7)
    for attempt in range(1, 40):
        d = backoff_delay(attempt, base=0.2, cap=30.0)
        nominal = min(30.0, 0.2 * 2 ** (attempt - 1))
        assert nominal * 0.5 <= d <= nominal
    assert backoff_delay(10_000, base=0.2, cap=30.0) <= 30.0  # no overflow for a long outage


def test_jitter_spreads_clients_that_retry_together() -> None:
    delays = {round(backoff_delay(5, base=0.2, cap=30.0), 6) for _ in range(50)}
    assert len(delays) > 40


def test_no_jitter_is_exact() -> None:
    b = Backoff(0.1, 5.0, jitter=(1.0, 1.0))
    assert [b() for _ in range(8)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0])
    b.reset()
    assert b() == pytest.approx(0.1)


def test_backoff_is_stateful_per_loop() -> None:
    b = Backoff(0.1, 5.0, jitter=(0.8, 1.2))
    first, second, third = b(), b(), b()
    assert 0.08 <= first <= 0.12 and 0.16 <= second <= 0.24 and 0.32 <= third <= 0.48
    assert b.attempt == 3
    b.reset()
    assert b.attempt == 0 and 0.08 <= b() <= 0.12
