"""kombu-specific behaviour: URL resolution, decoration-time errors, and the whole booster path on real
Redis and RabbitMQ through kombu's transports."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from boostkernel_kombu.broker import KombuBroker

from boostkernel import DeadLetter, boost
from boostkernel.booster import REGISTRY
from boostkernel.broker import Delivery, Outgoing
from boostkernel.errors import ConfigError
from boostkernel.testing.helpers import service_url, wait_until

URLS = {
    "redis": "kombu+" + service_url("redis"),
    "rabbitmq": "kombu+" + service_url("rabbitmq").replace("/%2F", "//"),
}


@pytest.fixture
def queue() -> Iterator[str]:
    name = f"t_kombu_{uuid.uuid4().hex[:10]}"
    yield name
    REGISTRY.pop(name, None)


def test_entry_point_imports_no_client_library() -> None:
    code = "import sys, boostkernel_kombu.plugin; assert 'kombu' not in sys.modules, 'kombu imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_kombu_urls_select_this_broker() -> None:
    from boostkernel.plugins import get_plugins

    assert get_plugins().resolve_broker_name("kombu+redis://127.0.0.1:6379/0") == "kombu"
    assert get_plugins().resolve_broker_name("kombu+memory://") == "kombu"


def test_unknown_transport_fails_at_decoration(queue: str) -> None:
    with pytest.raises(ConfigError, match="kombu cannot use broker URL"):
        @boost(queue, broker="kombu+nosuchtransport://localhost")
        def f() -> None: ...


def test_memory_transport_declares_what_it_can_keep() -> None:
    b = KombuBroker("t_mem_caps", "kombu+memory://")
    try:
        assert not b.capabilities.durable and not b.capabilities.cross_process
    finally:
        b.close()


@pytest.mark.parametrize("service", [pytest.param("redis", marks=pytest.mark.service("redis")),
                                     pytest.param("rabbitmq", marks=pytest.mark.service("rabbitmq"))])
def test_booster_end_to_end(service: str, queue: str) -> None:
    url = URLS[service]
    seen: list[int] = []

    @boost(queue, broker=url, concurrency="threads", workers=4)
    def task(i: int) -> None:
        seen.append(i)
        if i == 13:
            raise DeadLetter("unlucky")

    assert task.broker_name == "kombu"
    try:
        task.push_many([(i,) for i in range(50)])
        assert wait_until(lambda: task.count() == 50, 5)
        task.consume()
        assert wait_until(lambda: len(seen) == 50, 20)
        assert sorted(seen) == list(range(50))
        assert wait_until(lambda: [r.reason for r in task.dead_letters()] == ["unlucky"], 5)
        assert wait_until(lambda: task.count() == 0, 5)
    finally:
        task.stop(10)
        task.broker.purge_dead_letters()
        task.broker.delete_queues()
        task.broker.close()


@pytest.mark.service("redis")
@pytest.mark.parametrize("reached_server", [True, False], ids=["reply-lost", "request-lost"])
def test_redis_delivery_whose_unacked_record_failed_comes_back(queue: str, monkeypatch: pytest.MonkeyPatch,
                                                               reached_server: bool) -> None:
    """kombu's redis transport pops a message (BRPOP), then records it as unacked in a second round trip.
    When the connection drops during that second trip, the message must come back at once, not after
    kombu's visibility_timeout (1 h): reply-lost = Redis recorded it, request-lost = Redis never saw it."""
    import kombu.transport.redis as kombu_redis
    from redis.exceptions import ConnectionError as RedisConnectionError

    record = kombu_redis.QoS.append
    failed: list[str] = []

    def append_then_lose_connection(self: object, message: object, delivery_tag: str) -> None:
        if failed:
            record(self, message, delivery_tag)
            return
        failed.append(delivery_tag)
        if reached_server:  # Redis ran the MULTI, the reply never came: kombu's own bookkeeping is not updated
            record(self, message, delivery_tag)
            self._delivered.pop(delivery_tag)  # type: ignore[attr-defined]
        raise RedisConnectionError("connection lost (injected by the test)")

    monkeypatch.setattr(kombu_redis.QoS, "append", append_then_lose_connection)
    b = KombuBroker(queue, URLS["redis"])
    try:
        b.publish(Outgoing("m1", b"{}"))
        got: list[Delivery] = []
        assert wait_until(lambda: bool(got.extend(b.fetch(1, 0.2)) or got), 10.0), "message lost"
        assert failed, "the injected connection loss never happened"
        (d,) = got
        assert d.id == "m1" and d.delivery_count == 2
        b.ack(d)
        assert b.fetch(1, 0.5) == []
    finally:
        b.close()
        cleaner = KombuBroker(queue, URLS["redis"])
        cleaner.delete_queues()
        cleaner.close()


def test_many_delayed_nacks_beyond_the_held_window(queue: str) -> None:
    """More delayed copies than half the prefetch window: the overflow goes round the queue, none is
    delivered early, none is lost."""
    import time

    from boostkernel.broker import Outgoing

    b = KombuBroker(queue, "kombu+memory://", prefetch=4)
    try:
        ids = [f"m{i}" for i in range(10)]
        b.publish_many([Outgoing(i, b"{}") for i in ids])
        nacked: set[str] = set()
        t0 = time.monotonic()
        deadline = t0 + 10
        while len(nacked) < 10 and time.monotonic() < deadline:
            for d in b.fetch(10, 0.2):
                assert d.id not in nacked, "a delayed copy came back at once"
                nacked.add(d.id)
                b.nack(d, requeue=True, delay=1.5)
        assert len(nacked) == 10
        back: dict[str, float] = {}
        deadline = time.monotonic() + 10
        while len(back) < 10 and time.monotonic() < deadline:
            for d in b.fetch(10, 0.2):
                back.setdefault(d.id, time.monotonic() - t0)
                b.ack(d)
        assert sorted(back) == sorted(ids)
        assert min(back.values()) >= 1.45, back
    finally:
        b.close()


def test_redis_lease_options_are_checked() -> None:
    b = KombuBroker("t_lease_opts", URLS["redis"])
    try:  # the defaults: visibility_timeout = dead_after, own keys, an honest recovery bound
        t = b.transport_options
        assert t["visibility_timeout"] == 10.0 and t["unacked_index_key"] == "bk_unacked_index"
        assert b.capabilities.recovery_seconds <= 15.0
    finally:
        b.close()
    with pytest.raises(ConfigError, match="more than twice heartbeat_interval"):
        KombuBroker("t_lease_opts", URLS["redis"], heartbeat_interval=2.0,
                    transport_options={"visibility_timeout": 3})


@pytest.mark.service("redis")
def test_redis_lease_leaves_other_kombu_apps_alone(queue: str) -> None:
    """A celery worker sharing the Redis database keeps its unacked messages in kombu's default keys with
    its own (1 h) visibility timeout: the broker's short lease restores only its own keys' entries. Here a
    stale entry in the default keys (delivered 60 s ago) stays, and a stale entry in the broker's keys
    (a consumer killed 60 s ago) is restored into its queue. ``global_keyprefix`` keeps the test's keys
    apart from anyone else's on the shared Redis."""
    import json

    import redis

    prefix = f"bk-test-{uuid.uuid4().hex[:8]}:"
    r = redis.Redis.from_url(service_url("redis"))
    stale = 0.0  # a delivery time long past any visibility timeout of the broker
    raw = {"body": "e30=", "content-encoding": "binary", "content-type": "application/json",
           "headers": {"x-bk-id": "theirs"}, "properties": {"delivery_tag": "t-theirs", "body_encoding": "base64",
                                                             "delivery_info": {"exchange": "", "routing_key": queue}}}
    r.hset(prefix + "unacked", "t-theirs", json.dumps([raw, "", queue]))
    r.zadd(prefix + "unacked_index", {"t-theirs": stale})
    mine = {**raw, "headers": {"x-bk-id": "mine"}, "properties": {**raw["properties"], "delivery_tag": "t-mine"}}
    r.hset(prefix + "bk_unacked", "t-mine", json.dumps([mine, "", queue]))
    r.zadd(prefix + "bk_unacked_index", {"t-mine": stale})
    b = KombuBroker(queue, URLS["redis"], transport_options={"global_keyprefix": prefix},
                    heartbeat_interval=0.2, dead_after=1.0, reap_interval=0.2)
    try:
        b.publish(Outgoing("first", b"{}"))  # declares the queue (binding) so the restore finds it
        got: dict[str, Delivery] = {}
        assert wait_until(lambda: bool([got.setdefault(d.id, d) for d in b.fetch(2, 0.2)]) and "mine" in got,
                          10.0), f"the killed consumer's stale entry was not restored: {sorted(got)}"
        assert got["mine"].delivery_count == 2
        b.ack_many(got.values())
        assert r.zscore(prefix + "unacked_index", "t-theirs") == stale, "another app's unacked entry was touched"
        assert r.hexists(prefix + "unacked", "t-theirs")
    finally:
        b.delete_queues()
        b.close()
        for key in r.scan_iter(prefix + "*"):
            r.delete(key)
