"""The auto-batch buffer holds only each message's own bytes while Redis is slower than the producer."""

from __future__ import annotations

import gc
import threading
import tracemalloc
from typing import Any

import pytest

from boostkernel.broker import Outgoing
from boostkernel.message import Envelope
from boostkernel.testing.helpers import service_url

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
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        for i in range(n):
            env = Envelope(unique_queue, [i], {})
            broker.publish(Outgoing(env.id, env.encode()))
        del env
        gc.collect()
        per_message = (tracemalloc.get_traced_memory()[0] - base) / n
        tracemalloc.stop()
        assert broker._buffer.pending() == n
        assert per_message <= 1200, f"{per_message:.0f} bytes held per buffered message"
    finally:
        gate.set()
        assert broker.flush(30)
        assert broker.count() == n
        broker.purge()
        broker.close()
