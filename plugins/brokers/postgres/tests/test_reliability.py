"""What the contract does not cover: LISTEN/NOTIFY wake-ups, priority order within one batch, and a claim
whose reply was lost. (Crash redelivery, live long tasks, crash loops, competing consumers, cut connections
and a server restart are in the contract suite, test_contract.py.)"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from boostkernel.broker import Outgoing
from boostkernel.message import Envelope
from boostkernel.testing import wait_until
from boostkernel.testing.helpers import service_url

pytestmark = pytest.mark.service("postgres")

FAST = {"heartbeat_interval": 0.2, "dead_after": 1.0, "reap_interval": 0.2}


def _msg(i: int, priority: int = 0) -> Outgoing:
    env = Envelope("q", [i])
    return Outgoing(env.id, env.encode(), priority)


@pytest.fixture
def make(pg_schema: str) -> Iterator[object]:
    from boostkernel_postgres.broker import PostgresBroker

    made: list[PostgresBroker] = []

    def mk(queue: str, **options: object) -> PostgresBroker:
        b = PostgresBroker(queue, service_url("postgres"), None, schema=pg_schema, **{**FAST, **options})
        made.append(b)
        return b

    yield mk
    for b in made:
        b.close()


def test_idle_consumer_wakes_on_notify_not_poll(make) -> None:  # type: ignore[no-untyped-def]
    q = f"nq_{uuid.uuid4().hex[:8]}"
    consumer, producer = make(q, idle_poll=30.0), make(q)
    assert consumer.fetch(1, 0.2) == []  # LISTEN is in place
    got: list = []
    t = threading.Thread(target=lambda: got.extend(consumer.fetch(1, 20.0)))
    t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    producer.publish(_msg(7))
    t.join(25)
    latency = time.monotonic() - t0
    assert len(got) == 1
    assert latency < 5.0, f"woken after {latency:.2f}s: the consumer polled instead of waking on NOTIFY"
    consumer.ack(got[0])


def test_priority_then_fifo_in_one_batch(make) -> None:  # type: ignore[no-untyped-def]
    b = make(f"pr_{uuid.uuid4().hex[:8]}")
    msgs = [_msg(0, 1), _msg(1, 5), _msg(2, 1), _msg(3, 5), _msg(4, 0)]
    b.publish_many(msgs)
    got = b.fetch(5, 2)
    assert [d.id for d in got] == [msgs[i].id for i in (1, 3, 0, 2, 4)]
    b.ack_many(got)


def test_claim_whose_reply_was_lost_is_delivered_by_the_next_fetch(make) -> None:  # type: ignore[no-untyped-def]
    q = f"lr_{uuid.uuid4().hex[:8]}"
    b = make(q)
    b.publish(_msg(1))
    # the claim commits, then the connection dies before the reply is read
    real = b._claim_rows

    def claim_then_die(conn, n, acks):  # type: ignore[no-untyped-def]
        real(conn, n, acks)
        raise __import__("psycopg").OperationalError("connection lost (simulated after commit)")

    b._claim_rows = claim_then_die
    with pytest.raises(ConnectionError):
        b.fetch(1, 1)
    b._claim_rows = real
    assert b.in_flight() == 1 and b.count() == 0  # ours in the database, unknown to the worker
    got = b.fetch(1, 1)
    assert len(got) == 1
    b.ack(got[0])
    assert wait_until(lambda: b.in_flight() == 0, 5)
