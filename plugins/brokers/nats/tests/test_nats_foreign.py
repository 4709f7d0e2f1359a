"""Messages published by a foreign producer (plain nats-py, no boostkernel headers) on the queue's
subject: a JSON object runs as kwargs, bytes that are not JSON go to the DLQ stream with the reason, and
the worker keeps consuming."""

from __future__ import annotations

import asyncio
import threading
import uuid

import nats
import pytest

from boostkernel import boost
from boostkernel.testing.helpers import service_url, wait_until

pytestmark = pytest.mark.service("nats")


def test_foreign_messages_run_or_are_dead_lettered_with_the_reason() -> None:
    url = service_url("nats")
    queue = f"foreign_{uuid.uuid4().hex[:8]}"
    seen: list[int] = []
    lock = threading.Lock()

    @boost(queue, broker="nats", broker_url=url, workers=2, broker_options={"lease": 2.0})
    def add(x: int) -> None:
        with lock:
            seen.append(x)

    add.broker.count()  # creates the stream and the consumer

    async def produce() -> None:
        nc = await nats.connect(url)
        js = nc.jetstream()
        await js.publish(add.broker.subject, b'{"x": 7}')
        await js.publish(add.broker.subject, b"\xff not json")
        await nc.close()

    asyncio.run(produce())
    add.consume()
    try:
        assert wait_until(lambda: seen == [7], 20), seen
        assert wait_until(lambda: len(add.dead_letters()) == 1, 20)
        (dead,) = add.dead_letters()
        assert dead.id.startswith("nats-")
        assert dead.body == b"\xff not json"
        assert dead.reason, "the dead letter must say why"
    finally:
        add.stop(10)
        add.broker.delete_streams()
        add.broker.close()
