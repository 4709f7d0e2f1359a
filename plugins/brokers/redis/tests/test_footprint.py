"""The auto-batch buffer holds only each message's own bytes while Redis is slower than the producer."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from boostkernel.testing.helpers import bytes_held_per_message, service_url

pytestmark = pytest.mark.service("redis")


def test_a_buffered_no_op_message_holds_at_most_1200_bytes(unique_queue: str) -> None:
    from boostkernel_redis.broker import RedisBroker

    broker = RedisBroker(unique_queue, service_url("redis"), None, auto_batch=True)
    gate = threading.Event()
    assert broker._buffer is not None
    real_send = broker._buffer.send

    def held_back(items: list[Any]) -> None:  # Redis "slow": everything stays in the buffer
        gate.wait()
        real_send(items)

    broker._buffer.send = held_back
    n = 10_000
    try:
        per_message = bytes_held_per_message(broker, unique_queue, n)
        assert broker._buffer.pending() == n
        assert per_message <= 1200, f"{per_message:.0f} bytes held per buffered message"
    finally:
        gate.set()
        assert broker.flush(30)
        assert broker.count() == n
        broker.purge()
        broker.close()
