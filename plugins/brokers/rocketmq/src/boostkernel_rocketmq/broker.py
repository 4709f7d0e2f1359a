"""The Apache RocketMQ 5 broker (rocketmq-python-client's ``SimpleConsumer``). **Not tested against a
RocketMQ server here.**

* Publishing: ``Producer.send`` per message (returns after the server stored it); ``publish_many`` sends
  with ``send_async`` and waits for every future. The envelope id is the message key and property
  ``bk-id``. Delayed delivery needs a topic of type DELAY in RocketMQ 5 (the server refuses delayed
  messages on a NORMAL topic), so this broker does not declare ``delay``: the kernel holds countdowns.
* Consuming: ``receive(n, invisible_duration)`` hides the messages from the rest of the consumer group for
  ``invisible_duration`` (10 s). A heartbeat thread renews it (``change_invisible_duration``) every
  ``heartbeat_interval`` for every message this consumer holds, so long tasks of a live worker are not
  redelivered; a dead worker's messages become visible again when their invisible duration ends
  (recovery within about ``invisible_duration``). ``ack`` after the task.
* ``nack(delay)`` sets the invisible duration to the delay (at least 1 s): the message comes back then;
  ``delivery_count`` is RocketMQ's ``delivery_attempt``.
* Dead letters: ``dead_letter`` sends the message to ``%DLQ%<group>`` with property ``bk-reason`` and acks
  it (a crash in between leaves a duplicate). Crash loops: a message received with ``delivery_attempt`` >
  ``max_deliveries`` is dead-lettered with a reason naming the crash loop - this counts every redelivery,
  so messages a dying consumer had only received are charged too. RocketMQ's own retry policy of the
  group also moves messages to ``%DLQ%<group>`` after its maximum attempts (16 by default).
  The DLQ is read by the group ``boostkernel-dlq``: listing receives the records with a 1 s invisible
  duration and leaves them (they become visible again).
* ``count`` / ``purge``: not offered (they need RocketMQ's admin tools).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

try:
    from rocketmq import (  # type: ignore[import-untyped]
        ClientConfiguration,
        Credentials,
        FilterExpression,
        Message,
        Producer,
        SimpleConsumer,
    )
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(f'the rocketmq broker needs rocketmq-python-client ({exc}): '
                      f'pip install "boostkernel[rocketmq]"') from exc

from boostkernel.broker import Broker, BrokerCapabilities, DeadLetterRecord, Delivery, Outgoing
from boostkernel.errors import BrokerUnavailable
from boostkernel.logs import mask, mask_url

from ._common import parse

H_ID, H_REASON, H_FAILED_AT = "bk-id", "bk-reason", "bk-failed-at"


class RocketmqBroker(Broker):
    """A RocketMQ 5 topic consumed by a group with ``SimpleConsumer``. At-least-once: ack after the task."""

    name = "rocketmq"
    capabilities = BrokerCapabilities(count=False, purge=False, durable=True, recovery_seconds=15.0)
    default_url = "rocketmq://127.0.0.1:8081"

    check_at_decoration = True  # __init__ checks the URL and options and does not connect

    def __init__(self, queue: str, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(queue, url, params, **options)
        self.s = parse(self.url or self.default_url, queue, self.options)
        self._lock = threading.Lock()
        self._producer: Any = None
        self._consumer: Any = None
        self._held: dict[str, Any] = {}  # delivery key -> message whose invisible duration the heartbeat renews
        self._held_lock = threading.Lock()
        self._closed = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def _config(self) -> Any:
        return ClientConfiguration(self.s.endpoints, Credentials(self.s.access_key, self.s.secret_key),
                                   self.s.namespace, int(self.s.request_timeout))

    def _unavailable(self, what: str, exc: BaseException) -> BrokerUnavailable:
        return BrokerUnavailable(f"RocketMQ at {mask_url(self.s.url)}, {what}: {mask(str(exc) or type(exc).__name__)}")

    def _prod(self) -> Any:
        if self._producer is None:
            with self._lock:
                if self._producer is None:
                    p = Producer(self._config(), (self.s.topic,), tls_enable=self.s.tls)
                    try:
                        p.startup()
                    except Exception as exc:  # noqa: BLE001
                        raise self._unavailable("starting the producer", exc) from None
                    self._producer = p
        return self._producer

    def _message(self, topic: str, body: bytes, props: dict[str, str]) -> Any:
        m = Message()
        m.topic = topic
        m.body = body
        m.keys = props[H_ID]
        for k, v in props.items():
            m.add_property(k, v)
        return m

    # --- publishing -------------------------------------------------------------------------------
    def publish(self, message: Outgoing) -> None:
        if self._closed.is_set():
            raise BrokerUnavailable(f"rocketmq broker for queue {self.queue!r} is closed")
        try:
            self._prod().send(self._message(self.s.topic, message.body, {H_ID: message.id}))
        except BrokerUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._unavailable("send", exc) from None

    def publish_many(self, messages: Sequence[Outgoing]) -> None:
        """``send_async`` for every message, then wait for every future (a failure raises)."""
        prod = self._prod()
        try:
            futures = [prod.send_async(self._message(self.s.topic, m.body, {H_ID: m.id})) for m in messages]
            for f in futures:
                f.result(timeout=self.s.request_timeout * 10)
        except Exception as exc:  # noqa: BLE001
            raise self._unavailable("send_async", exc) from None

    # --- consuming --------------------------------------------------------------------------------
    def _cons(self) -> Any:
        if self._consumer is None:
            with self._lock:
                if self._consumer is None:
                    c = SimpleConsumer(self._config(), self.s.group, {self.s.topic: FilterExpression()},
                                       await_duration=max(1, int(self.s.await_duration)), tls_enable=self.s.tls)
                    try:
                        c.startup()
                    except Exception as exc:  # noqa: BLE001
                        raise self._unavailable("starting the consumer", exc) from None
                    self._consumer = c
                    self._heartbeat = threading.Thread(target=self._renew, name="boostkernel-rocketmq-heartbeat",
                                                       daemon=True)
                    self._heartbeat.start()
        return self._consumer

    def _renew(self) -> None:
        """The heartbeat: renew the invisible duration of every held message (runs on its own thread)."""
        while not self._closed.wait(self.s.heartbeat_interval):
            with self._held_lock:
                held = list(self._held.values())
            for m in held:
                try:
                    self._consumer.change_invisible_duration(m, int(self.s.invisible_duration))
                except Exception as exc:  # noqa: BLE001 - acked meanwhile, or the server is away
                    self.log.debug("renewing message %s failed: %s", m.message_id, exc)

    def _key(self, m: Any) -> str:
        return str((m.properties or {}).get(H_ID) or m.message_id)

    def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        if self._closed.is_set():
            return []
        c = self._cons()
        deadline = time.monotonic() + timeout
        out: list[Delivery] = []
        while not out:
            try:
                msgs = c.receive(max_messages, int(self.s.invisible_duration))
            except Exception as exc:  # noqa: BLE001
                raise self._unavailable("receive", exc) from None
            for m in msgs or []:
                d = Delivery(self._key(m), bytes(m.body), m, int(m.delivery_attempt or 1))
                if d.delivery_count > self.max_crashes:
                    self.dead_letter(d, f"crash-loop or repeated redelivery: delivered {d.delivery_count} times "
                                        f"(max_deliveries={self.max_crashes})")
                    continue
                with self._held_lock:
                    self._held[d.id] = m
                out.append(d)
            if time.monotonic() >= deadline:
                break
        return out

    def _release(self, delivery: Delivery) -> Any:
        with self._held_lock:
            self._held.pop(delivery.id, None)
        return None if self._closed.is_set() else self._consumer

    def ack(self, delivery: Delivery) -> None:
        c = self._release(delivery)
        if c is None:
            return
        try:
            c.ack(delivery.tag)
        except Exception as exc:  # noqa: BLE001 - the message comes back after its invisible duration
            self.log.debug("ack of %s failed (%s)", delivery.id, exc)

    def nack(self, delivery: Delivery, requeue: bool = True, delay: float = 0.0) -> None:
        """Requeue: visible again after ``delay`` (at least 1 s); without requeue it is acked (dropped)."""
        if not requeue:
            self.ack(delivery)
            return
        c = self._release(delivery)
        if c is None:
            return
        try:
            c.change_invisible_duration(delivery.tag, max(1, int(round(delay))))
        except Exception as exc:  # noqa: BLE001
            self.log.debug("nack of %s failed (%s)", delivery.id, exc)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        props = {H_ID: delivery.id, H_REASON: reason, H_FAILED_AT: str(int(time.time() * 1000))}
        self._prod().send(self._message(self.s.dlq_topic, delivery.body, props))
        self.ack(delivery)

    def _dlq_pass(self, limit: int, move: Any) -> tuple[list[DeadLetterRecord], int]:
        c = SimpleConsumer(self._config(), "boostkernel-dlq", {self.s.dlq_topic: FilterExpression()},
                           await_duration=1, tls_enable=self.s.tls)
        c.startup()
        out: list[DeadLetterRecord] = []
        n = 0
        try:
            while len(out) < limit:
                msgs = c.receive(min(32, limit - len(out)), 1)
                if not msgs:
                    break
                for m in msgs:
                    p = m.properties or {}
                    rec = DeadLetterRecord(self._key(m), bytes(m.body), p.get(H_REASON) or
                                           "crash-loop or repeated redelivery (RocketMQ's retry policy)",
                                           int(p.get(H_FAILED_AT, 0) or 0) / 1000.0)
                    out.append(rec)
                    if move is not None and move(rec):
                        c.ack(m)
                        n += 1
        finally:
            c.shutdown()
        return out, n

    def dead_letters(self, limit: int = 100) -> list[DeadLetterRecord]:
        return self._dlq_pass(limit, None)[0]

    def replay_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        wanted = set(ids) if ids is not None else None

        def move(rec: DeadLetterRecord) -> bool:
            if wanted is not None and rec.id not in wanted:
                return False
            self._prod().send(self._message(self.s.topic, rec.body, {H_ID: rec.id}))
            return True

        return self._dlq_pass(10**9, move)[1]

    def purge_dead_letters(self) -> int:
        return self._dlq_pass(10**9, lambda _r: True)[1]

    def close(self) -> None:
        """Stop the heartbeat, hand held messages back (visible again after 1 s), stop the clients."""
        if not self.stop_background(self._closed):
            return
        with self._held_lock:
            held = list(self._held.values())
        for m in held:
            try:
                self._consumer.change_invisible_duration(m, 1)
            except Exception:  # noqa: BLE001 - they come back after their invisible duration anyway
                pass
        for obj in (self._consumer, self._producer):
            if obj is not None:
                try:
                    obj.shutdown()
                except Exception:  # noqa: BLE001
                    pass
        with self._held_lock:
            self._held.clear()

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(topic=self.s.topic, group=self.s.group, dlq_topic=self.s.dlq_topic)
        return d
