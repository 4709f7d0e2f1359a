"""Reliability of the Redis brokers against the real server: dead consumers, long tasks, poison messages,
foreign producers, priorities, auto-batched publishing, results through the Redis store."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from boostkernel.broker import Broker, Outgoing
from boostkernel.message import Envelope
from boostkernel.testing.helpers import service_url, wait_until

pytestmark = pytest.mark.service("redis")

FAST = {"heartbeat_interval": 0.2, "dead_after": 1.0, "reap_interval": 0.2, "idle_poll": 0.1}


def msg(**kwargs: Any) -> Outgoing:
    env = Envelope("t", [], kwargs)
    return Outgoing(env.id, env.encode())


@pytest.fixture(params=["list", "streams"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make(kind: str, unique_queue: str) -> Iterator[Any]:
    from boostkernel_redis.broker import RedisBroker
    from boostkernel_redis.streams import RedisStreamsBroker

    cls = RedisBroker if kind == "list" else RedisStreamsBroker
    made: list[Broker] = []

    def factory(**options: Any) -> Any:
        b = cls(unique_queue, service_url("redis"), None, **{**FAST, **options})
        made.append(b)
        return b

    yield factory
    for b in made:
        b.close()
    made[0].purge()
    made[0].purge_dead_letters()


def _die(broker: Any) -> None:
    """Simulate kill -9: the consumer stops heartbeating and never releases what it holds."""
    from boostkernel_redis._common import maintenance

    maintenance.remove(broker)
    broker._closed = True
    broker._started = False  # close() becomes a no-op: nothing is returned gracefully


def test_dead_consumers_messages_come_back_with_delivery_count(make: Any) -> None:
    producer, victim, rescuer = make(), make(), make()
    m = msg(x=1)
    producer.publish(m)
    got = victim.fetch(1, 2)
    assert [d.id for d in got] == [m.id]
    _die(victim)
    t0 = time.monotonic()
    again: list[Any] = []
    while not again and time.monotonic() - t0 < 10:
        again = rescuer.fetch(1, 0.3)
    assert [d.id for d in again] == [m.id], "a dead consumer's message must be returned by a live worker's reaper"
    assert again[0].delivery_count == 2
    assert time.monotonic() - t0 < 1.0 + 0.2 + 3, "recovery within dead_after + reap_interval (+ slack)"
    rescuer.ack(again[0])
    rescuer.flush_acks()
    assert wait_until(lambda: rescuer.in_flight() == 0, 5)


def test_long_task_of_a_live_worker_is_never_redelivered(make: Any) -> None:
    producer, runner, other = make(), make(), make()
    producer.publish(msg(long=True))
    held = runner.fetch(1, 2)
    assert len(held) == 1
    deadline = time.monotonic() + 3.5  # 3.5x dead_after while the runner keeps heartbeating
    while time.monotonic() < deadline:
        assert other.fetch(1, 0.3) == [], "a live worker's long task was stolen"
    runner.ack(held[0])
    runner.flush_acks()
    assert other.fetch(1, 0.3) == []


def test_message_that_kills_its_worker_3_times_goes_to_dead_letters(make: Any) -> None:
    producer = make(max_deliveries=3)
    m = msg(poison=True)
    bystanders = [msg(i=i) for i in range(4)]
    producer.publish_many([m, *bystanders])
    for crash in range(3):
        victim = make(max_deliveries=3)
        got: list[Any] = []
        deadline = time.monotonic() + 10
        while len(got) < 5 and time.monotonic() < deadline:
            got += victim.fetch(5 - len(got), 0.3)
        poison = [d for d in got if d.id == m.id]
        assert poison, f"not redelivered after crash {crash}"
        assert poison[0].delivery_count == crash + 1
        assert poison[0].crashes == crash
        assert all(d.crashes == 0 for d in got if d.id != m.id), "a prefetched bystander was charged"
        victim.started(poison[0])  # it holds all five, but only the poison runs when it dies
        _die(victim)
    survivor = make(max_deliveries=3)
    back: list[Any] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (survivor.dead_letters() and len(back) >= 4):
        back += survivor.fetch(5, 0.1)
    dead = survivor.dead_letters()
    assert [d.id for d in dead] == [m.id], "only the message that was running is dead-lettered"
    assert dead[0].reason.startswith("crash-loop")
    assert dead[0].body == m.body
    assert sorted(d.id for d in back) == sorted(b.id for b in bystanders)
    survivor.ack_many(back)
    assert survivor.count() == 0


def test_corrupted_element_goes_to_dead_letters_and_its_batch_is_delivered(list_broker: Any) -> None:
    good = [msg(i=i) for i in range(20)]
    list_broker.publish_many(good[:10])
    list_broker.redis.rpush(list_broker.base + ":q", b"\x01framing byte, then no header at all")
    list_broker.redis.rpush(list_broker.base + ":q", b"\x01id\nnot-a-number\n0\nbody")
    list_broker.publish_many(good[10:])
    got: list[Any] = []
    deadline = time.monotonic() + 10
    while len(got) < 20 and time.monotonic() < deadline:
        got += list_broker.fetch(50, 0.3)
    assert sorted(d.id for d in got) == sorted(m.id for m in good), "nothing popped may vanish"
    list_broker.ack_many(got)
    dead = list_broker.dead_letters()
    assert len(dead) == 2
    assert all(r.reason.startswith("malformed element") for r in dead)
    assert {r.body for r in dead} == {b"\x01framing byte, then no header at all",
                                      b"\x01id\nnot-a-number\n0\nbody"}
    list_broker.purge_dead_letters()


def test_close_returns_prefetched_batch_and_ack_after_close_is_harmless(make: Any) -> None:
    producer, consumer = make(), make()
    msgs = [msg(i=i) for i in range(20)]
    producer.publish_many(msgs)
    got: list[Any] = []
    while len(got) < 20:
        got += consumer.fetch(20 - len(got), 1)
    consumer.ack_many(got[:5])
    consumer.close()
    consumer.ack(got[6])
    back: list[Any] = []
    deadline = time.monotonic() + 5
    while len(back) < 15 and time.monotonic() < deadline:
        back += producer.fetch(20, 0.3)
    assert sorted(d.id for d in back) == sorted(m.id for m in msgs[5:])
    producer.ack_many(back)


def test_delayed_and_requeue_with_delay(make: Any) -> None:
    b = make()
    m = msg()
    b.publish(m)
    d = b.fetch(1, 2)[0]
    b.nack(d, requeue=True, delay=0.8)
    assert b.fetch(1, 0.4) == []
    again: list[Any] = []
    deadline = time.monotonic() + 5
    while not again and time.monotonic() < deadline:
        again = b.fetch(1, 0.3)
    assert [x.id for x in again] == [m.id]
    assert again[0].delivery_count == 2
    b.ack(again[0])


def test_identical_bodies_are_separate_in_flight_records(make: Any) -> None:
    """Rule 4: in-flight records are keyed by message id, never by body."""
    b = make()
    body = Envelope("t", [], {"same": 1}, id="fixed-id-a").encode()
    b.publish_many([Outgoing("fixed-id-a", body), Outgoing("fixed-id-b", body)])
    got = b.fetch(2, 2)
    got += b.fetch(2 - len(got), 2) if len(got) < 2 else []
    assert sorted(d.id for d in got) == ["fixed-id-a", "fixed-id-b"]
    b.ack(got[0])
    b.flush_acks()
    assert b.in_flight() == 1
    b.ack(got[1])
    b.flush_acks()
    assert b.in_flight() == 0


# --- list-only features ----------------------------------------------------------------------------


@pytest.fixture
def list_broker(unique_queue: str) -> Iterator[Any]:
    from boostkernel_redis.broker import RedisBroker

    b = RedisBroker(unique_queue, service_url("redis"), None, **FAST)
    yield b
    b.close()
    b.purge()
    b.purge_dead_letters()


def test_keys_share_one_cluster_slot(list_broker: Any) -> None:
    import redis

    list_broker.publish(msg())
    list_broker.publish(Outgoing("delayed-1", msg().body, 0, time.time() + 60))
    list_broker.fetch(1, 2)
    r = redis.Redis.from_url(service_url("redis"))
    keys = [k.decode() for k in r.scan_iter(match=f"bk:{{{list_broker.queue}}}:*")]
    assert len(keys) >= 3
    # Redis Cluster hashes only the part in braces: every key of the queue carries the same tag
    assert all(k.count("{") == 1 and f"{{{list_broker.queue}}}" in k for k in keys), keys


def test_foreign_producer_plain_json_is_consumed_as_kwargs(unique_queue: str) -> None:
    import redis

    from boostkernel import boost

    seen: list[int] = []

    @boost(unique_queue, broker="redis", broker_url=service_url("redis"), concurrency="threads", workers=2,
           broker_options=FAST)
    def add(x: int, y: int) -> None:
        seen.append(x + y)

    r = redis.Redis.from_url(service_url("redis"))
    r.rpush(f"bk:{{{unique_queue}}}:q", b'{"x": 1, "y": 2}', b"not json at all")
    add.consume()
    try:
        assert wait_until(lambda: seen == [3] and len(add.dead_letters()) == 1, 10)
        assert "decode error" in add.dead_letters()[0].reason
    finally:
        add.stop()
        add.broker.purge_dead_letters()


def test_priority_levels_and_clamping(list_broker: Any) -> None:
    msgs = [Outgoing(f"p{p}", msg().body, p) for p in (0, 3, 42, -5, 9, 5)]
    list_broker.publish_many(msgs)
    order = []
    for _ in msgs:
        d = list_broker.fetch(1, 2)[0]
        order.append(d.id)
        list_broker.ack(d)
    assert order[:2] in (["p42", "p9"], ["p9", "p42"])  # 42 is clamped to 9
    assert order[2:] == ["p5", "p3", "p0", "p-5"]


def test_auto_batched_publish_is_flushed_at_clean_exit(unique_queue: str, tmp_path: Any) -> None:
    code = f"""
from boostkernel import boost
@boost({unique_queue!r}, broker="redis", broker_url={service_url("redis")!r},
       broker_options={{"auto_batch": True, "batch_interval": 0.5}})
def f(i: int) -> None: ...
for i in range(5000):
    f.push(i)
# no flush, no close: the interpreter's clean exit must send everything
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env=os.environ.copy())
    from boostkernel_redis.broker import RedisBroker

    b = RedisBroker(unique_queue, service_url("redis"), None)
    try:
        assert b.count() == 5000
    finally:
        b.purge()
        b.close()


def test_results_use_the_redis_store_and_wake_on_arrival(unique_queue: str) -> None:
    from boostkernel_redis.store import RedisStore

    from boostkernel import boost

    @boost(unique_queue, broker="redis", broker_url=service_url("redis"), results=True, concurrency="threads",
           workers=4, broker_options=FAST)
    def mul(x: int, y: int) -> int:
        time.sleep(0.2)
        return x * y

    assert isinstance(mul.store, RedisStore)
    mul.consume()
    try:
        r = mul.push(6, 7)
        t0 = time.monotonic()
        assert r.get(timeout=10) == 42
        assert time.monotonic() - t0 < 3
        rec = r.record()
        assert rec is not None and rec["status"] == "success" and rec["worker"]
    finally:
        mul.stop()


def test_url_with_password_db_and_bad_scheme(unique_queue: str) -> None:
    from boostkernel_redis.broker import RedisBroker

    from boostkernel.errors import ConfigError

    b = RedisBroker(unique_queue, "redis://:s3cret-pw@127.0.0.1:6379/15", None)
    assert "s3cret-pw" not in str(b.describe())
    b.close()
    with pytest.raises(ConfigError, match="redis://"):
        RedisBroker(unique_queue, "http://127.0.0.1:6379", None)


def test_broker_names_resolve_through_entry_points() -> None:
    from boostkernel.plugins import get_plugins

    plugins = get_plugins()
    assert plugins.resolve_broker_name("redis://127.0.0.1:6379/0") == "redis"
    assert plugins.resolve_broker_name("rediss://h:6380/0") == "redis"
    for name in ("redis", "redis-streams", "redis-pubsub"):
        cls = plugins.get("broker", name).load()
        assert cls.default_store == "redis"
    assert plugins.get("store", "redis").load().capabilities.push_wait


def test_pubsub_fans_out_to_every_subscriber(unique_queue: str) -> None:
    from boostkernel_redis.pubsub import RedisPubSubBroker

    subs = [RedisPubSubBroker(unique_queue, service_url("redis"), None) for _ in range(3)]
    pub = RedisPubSubBroker(unique_queue, service_url("redis"), None)
    try:
        for s in subs:
            s.subscribe()
        msgs = [msg(i=i) for i in range(10)]
        pub.publish_many(msgs)
        for s in subs:
            got: list[Any] = []
            deadline = time.monotonic() + 5
            while len(got) < 10 and time.monotonic() < deadline:
                got += s.fetch(10, 0.5)
            assert [d.id for d in got] == [m.id for m in msgs]
    finally:
        for s in subs + [pub]:
            s.close()


def test_queue_id_with_newline_is_rejected(list_broker: Any) -> None:
    from boostkernel.errors import ConfigError

    with pytest.raises(ConfigError, match="newline"):
        list_broker.publish(Outgoing("bad\nid", b"{}"))



def test_controls_coordinate_through_the_redis_store(unique_queue: str) -> None:
    """dedup (claims + done markers) and pause (a flag) keep their state in the Redis store."""
    from boostkernel_redis.store import RedisStore

    from boostkernel import boost

    runs: list[int] = []

    @boost(unique_queue, broker="redis", broker_url=service_url("redis"), concurrency="threads", workers=4,
           dedup=True, pausable=True, broker_options=FAST)
    def once(x: int) -> None:
        runs.append(x)

    assert isinstance(once.store, RedisStore)
    once.pause()
    once.push_many([(1,), (1,), (2,)])
    once.consume()
    try:
        time.sleep(1.5)
        assert runs == [], "a paused queue must not run tasks"
        once.resume()
        assert wait_until(lambda: sorted(runs) == [1, 2] and once.count() == 0, 15)
        time.sleep(0.5)
        assert sorted(runs) == [1, 2], "the duplicate call ran again"
        assert once.store.keys("dedup:"), "dedup markers live in the Redis store"
    finally:
        once.stop()


@pytest.mark.parametrize("broker", ["redis", "redis-streams"])
def test_booster_consumes_everything_and_leaves_nothing_behind(broker: str, unique_queue: str) -> None:
    import redis

    from boostkernel import TaskOptions, boost

    seen: list[int] = []

    @boost(unique_queue, broker=broker, broker_url=service_url("redis"), concurrency="threads", workers=8,
           broker_options=FAST)
    def work(i: int) -> None:
        seen.append(i)

    work.push_many([(i,) for i in range(300)])
    work.publish({"i": 300}, TaskOptions(countdown=0.5))
    work.consume()
    try:
        assert wait_until(lambda: len(seen) == 301, 20)
    finally:
        work.stop()
    assert sorted(seen) == list(range(301))
    r = redis.Redis.from_url(service_url("redis"))
    if broker == "redis-streams":
        assert r.xlen(f"bk:{{{unique_queue}}}:stream") == 0, "acked entries are deleted (XDEL)"
    assert work.count() == 0 and work.broker.in_flight() == 0


def test_fetch_whose_reply_was_lost_is_delivered_by_the_next_fetch(list_broker: Any) -> None:
    """The fetch script ran on the server (messages recorded in our in-flight hash) but its reply never came
    back (connection cut, socket timeout): the next fetch must hand those messages out, not strand them."""
    msgs = [msg(i=i) for i in range(3)]
    list_broker.publish_many(msgs)
    list_broker._start()
    # run the script as a fetch would, and "lose" its reply
    list_broker._fetch_script(keys=[list_broker._q0], args=[list_broker.base, list_broker.cid, 3, 0])
    list_broker._suspect = True  # what fetch() sets when the call raised
    got = list_broker.fetch(10, 1)
    assert sorted(d.id for d in got) == sorted(m.id for m in msgs)
    list_broker.ack_many(got)
    list_broker.flush_acks()
    assert list_broker.in_flight() == 0
    assert list_broker.fetch(10, 0.2) == []


def test_streams_entry_whose_reply_was_lost_comes_back_uncharged(unique_queue: str) -> None:
    from boostkernel_redis.streams import GROUP, RedisStreamsBroker

    b = RedisStreamsBroker(unique_queue, service_url("redis"), None, **FAST)
    try:
        m = msg(lost=True)
        b.publish(m)
        b._start()
        # an XREADGROUP for this live consumer whose reply never reached it: pending, never delivered
        assert b.redis.xreadgroup(GROUP, b.cid, {b.stream: ">"}, count=1)
        got: list[Any] = []
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            got = b.fetch(1, 0.3)
        assert [d.id for d in got] == [m.id], "an entry pending for a live consumer that never got it is returned"
        assert got[0].crashes == 0
        b.ack(got[0])
    finally:
        b.close()
        b.purge()
