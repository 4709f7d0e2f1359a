"""K8 delayed tasks: durable in the broker, never held in worker memory; the kernel's fallback for brokers
without native delay (``capabilities.delay=False``)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from boostkernel_sqlite.broker import SqliteBroker

from boostkernel import TaskOptions, boost, hookimpl
from boostkernel.booster import REGISTRY
from boostkernel.broker import BrokerCapabilities, Delivery, Outgoing
from boostkernel.plugins import Registry, get_plugins
from boostkernel.testing.control_contract import broker_params, require_broker
from boostkernel.testing.helpers import wait_until


def q() -> str:
    return f"dl_{uuid.uuid4().hex[:10]}"


class NoDelaySqliteBroker(SqliteBroker):
    """The real SQLite broker with its delay switched off: eta and nack delays are ignored, as on a broker
    that has no native delay. Counts how often each message id is fetched."""

    name = "sqlite-nodelay"
    capabilities = BrokerCapabilities(ack=True, requeue=True, priority=True, delay=False, durable=True, count=True,
                                      purge=True, batch_publish=True, dead_letter=True, cross_process=True)
    fetched: dict[str, int] = {}

    def publish(self, message: Outgoing) -> None:
        super().publish(Outgoing(message.id, message.body, message.priority, None))

    def publish_many(self, messages: Any) -> None:
        super().publish_many([Outgoing(m.id, m.body, m.priority, None) for m in messages])

    def nack(self, delivery: Delivery, requeue: bool = True, delay: float = 0.0) -> None:
        super().nack(delivery, requeue, 0.0)

    def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        got = super().fetch(max_messages, timeout)
        for d in got:
            self.fetched[d.id] = self.fetched.get(d.id, 0) + 1
        return got


class _Plugin:
    @staticmethod
    @hookimpl
    def register_brokers(registry: Registry) -> None:
        registry.add_broker("sqlite-nodelay", "boostkernel_sqlite.broker:SqliteBroker", summary="test broker")
        registry.items["broker"]["sqlite-nodelay"]._loaded = NoDelaySqliteBroker


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BOOSTKERNEL_DATA_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def nodelay(data_dir: Path) -> Iterator[str]:
    ps = get_plugins()
    ps.register_plugin(_Plugin, "test-nodelay")
    yield "sqlite-nodelay"
    ps.unregister_plugin("test-nodelay")


@pytest.mark.parametrize("broker", ["sqlite", "redis"])
def test_countdown_waits_in_the_broker_not_in_the_worker(data_dir: Path, broker: str) -> None:
    require_broker(broker)
    ran: list[float] = []

    @boost(q(), broker=broker, results=True, **broker_params(broker))
    def t(x: int) -> int:
        ran.append(time.time())
        return x

    t0 = time.time()
    r = t.publish({"x": 1}, TaskOptions(countdown=1.5))
    t.consume()
    try:
        time.sleep(0.5)
        assert t.count() == 1  # still waiting in the broker
        consumer = t._consumer
        assert consumer is not None and consumer.processed == 0
        if broker == "sqlite":
            assert consumer.broker.in_flight() == 0  # type: ignore[attr-defined]  # not fetched into memory
        assert r.get(10) == 1
        assert ran[0] >= t0 + 1.5 - 0.05
    finally:
        t.stop()
        REGISTRY.pop(t.queue, None)


def test_delayed_message_survives_a_consumer_restart(data_dir: Path) -> None:
    ran: list[int] = []

    @boost(q(), broker="sqlite", results=True)
    def t(x: int) -> None:
        ran.append(x)

    r = t.publish({"x": 7}, TaskOptions(countdown=1.0))
    t.consume()
    time.sleep(0.3)
    t.stop()  # the consumer goes away before the eta: the message must not go with it
    assert ran == [] and t.count() == 1
    t.consume()
    try:
        r.get(10)
        assert ran == [7]
    finally:
        t.stop()
        REGISTRY.pop(t.queue, None)


def test_fallback_for_brokers_without_native_delay(nodelay: str) -> None:
    ran: dict[str, float] = {}
    lock = threading.Lock()

    @boost(q(), broker=nodelay, results=True, workers=4)
    def t(name: str) -> str:
        with lock:
            ran[name] = time.time()
        return name

    t0 = time.time()
    delayed = t.publish({"name": "delayed"}, TaskOptions(countdown=2.0))
    t.consume()
    try:
        time.sleep(0.3)
        now_ = t.push("now")  # a ready message is not held up by the parked one
        assert now_.get(5) == "now"
        assert ran["now"] < t0 + 1.8
        consumer = t._consumer
        assert consumer is not None
        # never held: between fetches the delayed message sits in the broker, not in flight
        samples = []
        for _ in range(10):
            samples.append(consumer.broker.in_flight())  # type: ignore[attr-defined]
            time.sleep(0.05)
        assert samples.count(0) >= 8, samples
        assert delayed.get(10) == "delayed"
        assert ran["delayed"] >= t0 + 2.0 - 0.05  # not before its eta
        # bounded circulation: about one fetch per second while it waited, not a busy loop
        assert NoDelaySqliteBroker.fetched[delayed.task_id] <= 6, NoDelaySqliteBroker.fetched[delayed.task_id]
        rec = delayed.record()
        assert rec is not None and rec["status"] == "success"
    finally:
        t.stop()
        REGISTRY.pop(t.queue, None)


def test_fallback_keeps_many_delayed_messages_durable(nodelay: str) -> None:
    done: list[int] = []
    lock = threading.Lock()

    @boost(q(), broker=nodelay, workers=4)
    def t(i: int) -> None:
        with lock:
            done.append(i)

    t.push_many([(i,) for i in range(20)], options=TaskOptions(countdown=1.0))
    t.push_many([(i,) for i in range(20, 25)])
    t.consume()
    try:
        assert wait_until(lambda: len(done) == 25, 15)
        assert sorted(done) == list(range(25))
        assert set(done[:5]) == set(range(20, 25))  # the ready ones first
        time.sleep(0.3)
        assert sorted(done) == list(range(25))  # each exactly once
    finally:
        t.stop()
        REGISTRY.pop(t.queue, None)


def test_republished_retry_backoff_is_honoured_without_native_delay(nodelay: str) -> None:
    attempts: list[float] = []

    @boost(q(), broker=nodelay, results=True, max_retries=1, retry_mode="republish", retry_backoff=1.0,
           retry_jitter=False)
    def flaky() -> str:
        attempts.append(time.time())
        if len(attempts) == 1:
            raise ConnectionError("first attempt fails")
        return "ok"

    r = flaky.push()
    flaky.consume()
    try:
        assert r.get(15) == "ok"
        assert len(attempts) == 2
        assert attempts[1] - attempts[0] >= 0.9  # the backoff waited in the broker, it did not run at once
    finally:
        flaky.stop()
        REGISTRY.pop(flaky.queue, None)
