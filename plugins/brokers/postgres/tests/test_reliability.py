"""Delivery guarantees of the PostgreSQL broker beyond the contract: kill -9 of a consumer, heartbeats,
crash loops, LISTEN/NOTIFY wake-ups, cut connections and a claim whose reply was lost."""

from __future__ import annotations

import subprocess
import sys
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

# A child that fetches and dies with the messages in flight: no ack, no close.
_CHILD = """
import os, sys
from boostkernel_postgres.broker import PostgresBroker
b = PostgresBroker(sys.argv[2], sys.argv[1], None, schema=sys.argv[3], heartbeat_interval=0.2, dead_after=1.0,
                   reap_interval=0.2)
got = []
while not got:
    got = b.fetch(10, 1.0)
for d in got:
    b.started(d)  # running, not only prefetched: the crash is charged to them
os._exit(137)
"""


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


def _crash_once(queue: str, schema: str) -> None:
    p = subprocess.run([sys.executable, "-c", _CHILD, service_url("postgres"), queue, schema], timeout=60)
    assert p.returncode == 137


def test_killed_consumers_messages_come_back(make, pg_schema: str) -> None:  # type: ignore[no-untyped-def]
    q = f"rq_{uuid.uuid4().hex[:8]}"
    b = make(q)
    msgs = [_msg(i) for i in range(5)]
    b.publish_many(msgs)
    _crash_once(q, pg_schema)
    assert b.count() == 0 and b.in_flight() == 5
    t0 = time.monotonic()
    got: list = []
    while len(got) < 5 and time.monotonic() - t0 < 10:
        got += b.fetch(5, 0.5)
    assert sorted(d.id for d in got) == sorted(m.id for m in msgs)
    assert all(d.delivery_count == 2 for d in got)
    b.ack_many(got)
    b.close()
    assert wait_until(lambda: make(q).in_flight() == 0, 5)


def test_long_task_of_live_consumer_is_not_redelivered(make) -> None:  # type: ignore[no-untyped-def]
    q = f"lq_{uuid.uuid4().hex[:8]}"
    worker, other = make(q), make(q)
    worker.publish(_msg(1))
    d = worker.fetch(1, 2)[0]
    time.sleep(3.0)  # three dead_after periods: the heartbeat keeps it ours
    assert other.fetch(1, 0.5) == []
    worker.ack(d)
    worker.close()
    assert other.fetch(1, 0.5) == []
    assert other.in_flight() == 0 and other.count() == 0


def test_crash_loop_goes_to_dead_letters(make, pg_schema: str) -> None:  # type: ignore[no-untyped-def]
    q = f"pq_{uuid.uuid4().hex[:8]}"
    b = make(q, max_deliveries=3)
    poison = _msg(0)
    b.publish(poison)
    for _ in range(3):
        _crash_once(q, pg_schema)
        assert wait_until(lambda: (b.reap() or True) and b.in_flight() == 0, 10, 0.2)
    dead = b.dead_letters()
    assert [r.id for r in dead] == [poison.id]
    assert dead[0].reason.startswith("crash-loop: its worker died 3 time(s) while running it")
    assert b.count() == 0


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


def test_reconnects_after_its_connections_are_cut(make) -> None:  # type: ignore[no-untyped-def]
    q = f"cq_{uuid.uuid4().hex[:8]}"
    b = make(q)
    b.publish(_msg(1))
    d = b.fetch(1, 2)[0]
    b.ack(d)
    assert wait_until(lambda: b.in_flight() == 0, 5)
    assert b.cut_connections() >= 1
    b.publish(_msg(2))  # the publishing connection was not cut; the fetch connection was
    got: list = []
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        try:
            got = b.fetch(1, 0.5)
        except ConnectionError:
            time.sleep(0.1)  # what the consume loop does: back off and fetch again
    assert len(got) == 1
    b.ack(got[0])
    assert wait_until(lambda: b.in_flight() == 0, 5), "acks flow again after the cut"
    assert b._fetch.reconnects >= 1


def test_claim_whose_reply_was_lost_is_delivered_by_the_next_fetch(make) -> None:  # type: ignore[no-untyped-def]
    q = f"lr_{uuid.uuid4().hex[:8]}"
    b = make(q)
    b.publish(_msg(1))
    # the claim commits, then the connection dies before the reply is read
    real = b._claim

    def claim_then_die(conn, n, acks):  # type: ignore[no-untyped-def]
        real(conn, n, acks)
        raise __import__("psycopg").OperationalError("connection lost (simulated after commit)")

    b._claim = claim_then_die
    with pytest.raises(ConnectionError):
        b.fetch(1, 1)
    b._claim = real
    assert b.in_flight() == 1 and b.count() == 0  # ours in the database, unknown to the worker
    got = b.fetch(1, 1)
    assert len(got) == 1
    b.ack(got[0])
    assert wait_until(lambda: b.in_flight() == 0, 5)
