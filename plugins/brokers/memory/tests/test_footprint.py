"""A queued message holds only its own bytes: a JSON encoder's oversized output buffer (orjson keeps ~4 KB
for a 139-byte body) must not stay alive for as long as the message waits in the queue."""

from __future__ import annotations

from boostkernel.testing.helpers import bytes_held_per_message


def test_a_queued_no_op_message_holds_at_most_1200_bytes(unique_queue: str) -> None:
    from boostkernel_memory.broker import MemoryBroker

    broker = MemoryBroker(unique_queue)
    n = 10_000
    try:
        per_message = bytes_held_per_message(broker, unique_queue, n)
        assert broker.count() == n
        assert per_message <= 1200, f"{per_message:.0f} bytes held per queued message"
    finally:
        broker.purge()
        broker.close()
