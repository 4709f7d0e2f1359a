"""@boost end to end on both Kafka brokers: run, Requeue (re-published copy), DeadLetter (to <topic>.dlq), replay."""

from __future__ import annotations

import threading
import uuid

import pytest

from boostkernel import boost
from boostkernel.errors import DeadLetter, Requeue
from boostkernel.testing import wait_until
from boostkernel.testing.helpers import service_url

pytestmark = pytest.mark.service("kafka")


@pytest.mark.parametrize("broker_name", ["kafka", "confluent-kafka"])
def test_boosted_function_runs_requeues_and_dead_letters(broker_name: str) -> None:
    if broker_name == "confluent-kafka":
        pytest.importorskip("confluent_kafka")
    queue = f"boost_{broker_name.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
    ran: list[tuple[int, int]] = []
    lock = threading.Lock()
    requeued: set[int] = set()

    @boost(queue, broker=broker_name, broker_url=service_url("kafka"), workers=8,
           broker_options={"session_timeout_ms": 2000, "heartbeat_interval_ms": 300, "partitions": 2})
    def work(i: int) -> None:
        from boostkernel import current_task

        ctx = current_task()
        assert ctx is not None and ctx.delivery is not None
        if i == 3 and i not in requeued:
            requeued.add(i)
            raise Requeue()
        if i == 7:
            raise DeadLetter(f"seven is bad ({broker_name})")
        with lock:
            ran.append((i, ctx.delivery.delivery_count))

    work.push_many([(i,) for i in range(10)])
    assert wait_until(lambda: work.count() == 10, 10)
    work.consume()
    try:
        assert wait_until(lambda: len(ran) == 9, 30)
        assert sorted(i for i, _ in ran) == [0, 1, 2, 3, 4, 5, 6, 8, 9]
        assert dict(ran)[3] == 2  # the requeued copy carries its delivery count
        dead = work.dead_letters()
        assert [r.reason for r in dead] == [f"seven is bad ({broker_name})"]
        assert wait_until(lambda: work.count() == 0, 10)  # nothing waiting
    finally:
        work.stop()
    assert work.replay_dead_letters() == 1
    assert work.dead_letters() == []
    assert work.count() == 1
