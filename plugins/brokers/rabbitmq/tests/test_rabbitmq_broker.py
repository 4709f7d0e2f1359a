"""RabbitMQ-specific behaviour against the real server: threads and heartbeats, stale acks after a channel
loss, reconnects, pipelined publishing from many threads, clear errors, and the whole booster path."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import pika
import pytest
from boostkernel_rabbitmq.broker import RabbitmqBroker, delay_bucket

from boostkernel import DeadLetter, TaskOptions, boost
from boostkernel.booster import REGISTRY
from boostkernel.broker import Outgoing
from boostkernel.errors import BrokerUnavailable
from boostkernel.message import Envelope
from boostkernel.testing.helpers import service_url, wait_until

pytestmark = pytest.mark.service("rabbitmq")


def _msg(i: int = 0, priority: int = 0, eta: float | None = None) -> Outgoing:
    env = Envelope("t", [i], {})
    return Outgoing(env.id, env.encode(), priority, eta)


@pytest.fixture
def queue() -> Iterator[str]:
    name = f"t_rmq_{uuid.uuid4().hex[:10]}"
    yield name
    REGISTRY.pop(name, None)
    b = RabbitmqBroker(name, service_url("rabbitmq"))
    b.delete_queues()
    b.close()


def test_entry_point_imports_no_client_library() -> None:
    code = "import sys, boostkernel_rabbitmq.plugin; assert 'pika' not in sys.modules, 'pika imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_amqp_urls_select_this_broker() -> None:
    from boostkernel.plugins import get_plugins

    assert get_plugins().resolve_broker_name("amqp://guest:guest@127.0.0.1:5672/%2F") == "rabbitmq"
    assert get_plugins().resolve_broker_name("amqps://u:p@example.com/v") == "rabbitmq"


def test_delay_buckets_never_exceed_the_remaining_time() -> None:
    for remaining in (0.0004, 0.001, 0.0015, 0.9, 1.5, 60.0, 86_400.0):
        ms = delay_bucket(remaining)
        assert ms == 1 or ms <= remaining * 1000
        assert ms > remaining * 1000 / 2 or ms == 1 << 24  # the largest power of two that fits (or the cap)


def test_booster_end_to_end_results_priority_and_countdown(queue: str, tmp_path: object) -> None:
    ran: list[tuple[int, float]] = []

    @boost(queue, broker=service_url("rabbitmq"), concurrency="threads", workers=1, prefetch=1, results=True,
           data_dir=str(tmp_path))
    def square(x: int) -> int:
        ran.append((x, time.time()))
        return x * x

    assert square.broker_name == "rabbitmq"
    square.publish({"x": 1}, TaskOptions(priority=1))
    square.publish({"x": 9}, TaskOptions(priority=9))
    t_delayed = time.time()
    delayed = square.publish({"x": 5}, TaskOptions(countdown=1.2))
    r = square.push(3)
    assert wait_until(lambda: square.count() == 4, 5)
    square.consume()
    try:
        assert r.get(timeout=15) == 9
        assert delayed.get(timeout=15) == 25
    finally:
        square.stop(10)
    order = [x for x, _ in ran]
    assert order.index(9) < order.index(1)  # priority 9 before priority 1
    assert dict(ran)[5] >= t_delayed + 1.2  # never before its countdown
    assert square.count() == 0


def test_dead_letter_from_the_task_is_listed_with_reason_and_replayed(queue: str) -> None:
    calls: list[int] = []

    @boost(queue, broker="rabbitmq", broker_url=service_url("rabbitmq"), workers=2)
    def fussy(i: int) -> None:
        calls.append(i)
        if len(calls) == 1:
            raise DeadLetter("not today")

    fussy.push(7)
    fussy.consume()
    try:
        assert wait_until(lambda: len(fussy.dead_letters()) == 1, 10)
        [rec] = fussy.dead_letters()
        assert rec.reason == "not today" and b"[7]" in rec.body and rec.failed_at > time.time() - 60
        assert fussy.replay_dead_letters() == 1
        assert wait_until(lambda: calls == [7, 7], 10)
        assert fussy.dead_letters() == []
    finally:
        fussy.stop(10)


def test_long_task_keeps_the_connection_alive_with_heartbeats(queue: str) -> None:
    """heartbeat=1 s: a 4 s task would lose the connection if the I/O thread ran it; it must not."""
    url = service_url("rabbitmq")
    runs: list[int] = []

    @boost(queue, broker=url, workers=1, broker_options={"heartbeat": 1})
    def slow(i: int) -> None:
        from boostkernel import current_task

        ctx = current_task()
        assert ctx is not None
        runs.append(ctx.delivery.delivery_count)
        time.sleep(4)

    slow.push(1)
    slow.consume()
    consumer = slow._consumer
    try:
        assert wait_until(lambda: runs == [1], 10)
        link = consumer.broker._con  # type: ignore[union-attr,attr-defined]
        gen = link.generation
        time.sleep(5)  # the task finishes and is acked on the same connection
        assert link.generation == gen and link.ready
        assert runs == [1]
        assert wait_until(lambda: slow.count() == 0, 5)
    finally:
        slow.stop(10)
    assert runs == [1]  # never redelivered


def test_ack_for_a_lost_channel_is_dropped_and_the_link_recovers(queue: str) -> None:
    url = service_url("rabbitmq")
    b = RabbitmqBroker(queue, url, prefetch=10, backoff_max=1.0)
    try:
        m = _msg(1)
        b.publish(m)
        [d] = b.fetch(1, 5)
        link = b._con
        assert link is not None
        gen = link.generation
        # make the *server* close our channel: ack a delivery tag it never sent (406 PRECONDITION_FAILED)
        link.ioloop.add_callback_threadsafe(lambda: link.channel.basic_ack(987654))
        assert wait_until(lambda: link.generation > gen, 5)
        b.ack(d)  # stale: must be dropped, not sent (it would close the new channel again)
        again = []
        deadline = time.monotonic() + 15
        while not again and time.monotonic() < deadline:
            again = b.fetch(1, 0.5)
        assert [x.id for x in again] == [m.id]
        assert again[0].delivery_count >= 2  # RabbitMQ flagged it redelivered
        new_gen = link.generation
        b.ack(again[0])
        b.publish(_msg(2))  # publishing still works on its own connection
        assert len(b.fetch(1, 5)) == 1
        assert link.generation == new_gen, "the stale ack closed the new channel"
    finally:
        b.close()


def test_pipelined_publish_from_many_threads(queue: str) -> None:
    b = RabbitmqBroker(queue, service_url("rabbitmq"))
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            for _ in range(5):
                b.publish_many([_msg(i) for i in range(400)])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=produce) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        assert wait_until(lambda: b.count() == 8000, 10)
    finally:
        b.close()


def test_unreachable_server_fails_fast_with_the_password_masked() -> None:
    b = RabbitmqBroker("t_unreachable", "amqp://guest:s3cr3t@127.0.0.1:1/%2F", connect_timeout=2)
    t0 = time.monotonic()
    try:
        with pytest.raises(BrokerUnavailable) as info:
            b.publish(_msg())
    finally:
        b.close()
    assert time.monotonic() - t0 < 10
    assert "s3cr3t" not in str(info.value) and "guest:**@" in str(info.value)


def test_existing_queue_with_other_arguments_gives_the_fix(queue: str) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(service_url("rabbitmq")))
    conn.channel().queue_declare(queue, durable=True)  # no x-max-priority
    conn.close()
    b = RabbitmqBroker(queue, service_url("rabbitmq"))
    try:
        with pytest.raises(BrokerUnavailable, match="max_priority"):
            b.publish(_msg())
    finally:
        b.close()
    ok = RabbitmqBroker(queue, service_url("rabbitmq"), max_priority=0)
    try:
        ok.publish(_msg())
        assert ok.count() == 1
    finally:
        ok.close()


def test_bad_options_fail_at_decoration(queue: str) -> None:
    from boostkernel.errors import ConfigError

    with pytest.raises(ConfigError, match="max_priority"):
        @boost(queue, broker="rabbitmq", broker_options={"max_priority": 1000})
        def f() -> None: ...


def test_publisher_resends_unconfirmed_messages_after_losing_its_channel(queue: str) -> None:
    url = service_url("rabbitmq")
    b = RabbitmqBroker(queue, url, backoff_max=1.0, prefetch=1000)
    try:
        b.publish(_msg(-1))  # connect
        assert b.purge() == 1
        link = b._pub
        assert link is not None
        gen = link.generation
        msgs = [_msg(i) for i in range(3000)]
        errors: list[BaseException] = []

        def publish() -> None:
            try:
                b.publish_many(msgs)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        t = threading.Thread(target=publish)
        t.start()
        # right behind the first slice: make the *server* close the publisher channel (406 unknown tag)
        link.submit(lambda: link.channel.basic_ack(424242))
        t.join(60)
        assert not t.is_alive() and errors == []
        assert link.generation > gen, "the channel was not lost: the test did not test the resend"
        seen: set[str] = set()
        deadline = time.monotonic() + 30
        while len(seen) < len(msgs) and time.monotonic() < deadline:
            got = b.fetch(1000, 1.0)
            seen.update(d.id for d in got)
            b.ack_many(got)
        assert seen == {m.id for m in msgs}  # at-least-once: every message is there (duplicates allowed)
    finally:
        b.close()
