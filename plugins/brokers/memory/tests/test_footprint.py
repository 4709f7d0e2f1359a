"""A queued message holds only its own bytes: a JSON encoder's oversized output buffer (orjson keeps ~4 KB
for a 139-byte body) must not stay alive for as long as the message waits in the queue."""

from __future__ import annotations

import gc
import tracemalloc

from boostkernel.broker import Outgoing
from boostkernel.message import Envelope


def test_a_queued_no_op_message_holds_at_most_1200_bytes(unique_queue: str) -> None:
    from boostkernel_memory.broker import MemoryBroker

    broker = MemoryBroker(unique_queue)
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
        assert broker.count() == n
        assert per_message <= 1200, f"{per_message:.0f} bytes held per queued message"
    finally:
        broker.purge()
        broker.close()
