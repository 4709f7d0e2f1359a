"""The boostkernel contract suite against the real Redis (db 15 by default, unique queue names)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from boostkernel.broker import Broker
from boostkernel.store import Store
from boostkernel.testing import BrokerContract, StoreContract
from boostkernel.testing.helpers import service_url, wait_until

pytestmark = pytest.mark.service("redis")

FAST = {"heartbeat_interval": 0.2, "dead_after": 1.0, "reap_interval": 0.3, "idle_poll": 0.1}

NO_PRIVATE_REDIS = ("the shared Redis runs with persistence off and must not be restarted: durability is "
                    "tested against a private redis-server by the *Durability classes below")


def _client_kill(broker: Broker) -> None:
    """CLIENT KILL every connection of this process (redis-py names them boostkernel-<pid>); the broker
    must reconnect. The killer's own connection has no name, so it survives."""
    import os

    import redis

    admin = redis.Redis.from_url(service_url("redis"))
    try:
        mine = [c["id"] for c in admin.client_list() if c.get("name") == f"boostkernel-{os.getpid()}"]
        for cid in mine:
            admin.client_kill_filter(_id=cid)
        assert mine, "no connection of this process found to cut"
    finally:
        admin.close()


class _RedisDelivery(BrokerContract):
    lease_seconds = 1.0  # dead_after
    recovery_seconds = 5.0
    expected_failures = {"test_durable_across_service_restart": NO_PRIVATE_REDIS}

    @pytest.fixture
    def cut_connection(self) -> Callable[[Broker], None]:
        return _client_kill


def _maker(cls_path: str, service: str = "redis", **options: object) -> Callable[[], Iterator[Callable[[str], Broker]]]:
    """A ``make_broker`` fixture: brokers of ``cls_path`` on ``service`` (test_cluster.py uses it too)."""

    def fixture(self: object) -> Iterator[Callable[[str], Broker]]:
        import importlib

        mod, _, name = cls_path.partition(":")
        cls = getattr(importlib.import_module(mod), name)
        made: list[Broker] = []

        def make(queue: str) -> Broker:
            b = cls(queue, service_url(service), None, **options)
            if hasattr(b, "subscribe"):
                b.subscribe()  # fan-out: a subscriber only receives what is published after it subscribed
            made.append(b)
            return b

        yield make
        for b in made:
            b.close()

    return pytest.fixture(fixture)  # type: ignore[return-value]


class TestRedisListContract(_RedisDelivery):
    make_broker = _maker("boostkernel_redis.broker:RedisBroker", **FAST)


class TestRedisListAutoBatchContract(_RedisDelivery):
    delivery_tests = False  # the same fetch/ack/reaper path as TestRedisListContract; only publishing differs
    make_broker = _maker("boostkernel_redis.broker:RedisBroker", auto_batch=True, **FAST)


class TestRedisStreamsContract(_RedisDelivery):
    make_broker = _maker("boostkernel_redis.streams:RedisStreamsBroker", **FAST)


class TestRedisPubSubContract(BrokerContract):
    make_broker = _maker("boostkernel_redis.pubsub:RedisPubSubBroker")


def _store_maker(service: str = "redis") -> Callable[[], Iterator[Callable[[], Store]]]:
    """A ``make_store`` fixture: Redis stores on ``service`` under a unique key prefix."""

    def fixture(self: object) -> Iterator[Callable[[], Store]]:
        from boostkernel_redis.store import RedisStore

        prefix = f"bktest-{uuid.uuid4().hex[:8]}"
        made: list[Store] = []

        def make() -> Store:
            s = RedisStore(service_url(service), None, key_prefix=prefix)
            made.append(s)
            return s

        yield make
        for s in made:
            s.close()

    return pytest.fixture(fixture)  # type: ignore[return-value]


class TestRedisStoreContract(StoreContract):
    make_store = _store_maker()


class _PrivateRedis:
    """A private redis-server (AOF, fsync always) on a free port, restarted by SIGKILL + start."""

    def __init__(self, tmp: Path) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.dir = tmp
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is needed for the durability test (apt-get install redis-server)")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
             "--appendfsync", "always", "--dir", str(self.dir), "--logfile", str(self.dir / "redis.log")])
        import redis

        r = redis.Redis(port=self.port)
        assert wait_until(lambda: _pings(r), timeout=30), (self.dir / "redis.log").read_text()[-2000:]
        r.close()

    def restart(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)  # harsher than a restart: only what was fsynced survives
        self.proc.wait(30)
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def _pings(r: object) -> bool:
    try:
        return bool(r.ping())  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - not up yet
        return False


def _durability_class(cls_path: str) -> type[BrokerContract]:
    class Durability(BrokerContract):
        only_tests = frozenset({"test_durable_across_service_restart"})
        recovery_seconds = 5.0

        @pytest.fixture
        def private_redis(self, tmp_path: Path) -> Iterator[_PrivateRedis]:
            server = _PrivateRedis(tmp_path)
            yield server
            server.stop()

        @pytest.fixture
        def make_broker(self, private_redis: _PrivateRedis) -> Iterator[Callable[[str], Broker]]:
            import importlib

            mod, _, name = cls_path.partition(":")
            cls = getattr(importlib.import_module(mod), name)
            made: list[Broker] = []

            def make(queue: str) -> Broker:
                b = cls(queue, private_redis.url, None, **FAST)
                made.append(b)
                return b

            yield make
            for b in made:
                b.close()

        @pytest.fixture
        def restart_service(self, private_redis: _PrivateRedis) -> Callable[[], None]:
            return private_redis.restart

    return Durability


TestRedisListDurability = _durability_class("boostkernel_redis.broker:RedisBroker")
TestRedisStreamsDurability = _durability_class("boostkernel_redis.streams:RedisStreamsBroker")
