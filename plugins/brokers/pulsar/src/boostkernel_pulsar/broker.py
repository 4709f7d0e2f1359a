"""The Apache Pulsar broker (pulsar-client). **Not tested against a Pulsar server here.**

* Publishing: one producer per broker; ``publish`` is ``send`` (returns after the broker persisted the
  message), ``publish_many`` is ``send_async`` for the batch then ``flush`` and a check of every callback.
  The envelope id travels in the property ``bk-id``; a future ``eta`` uses ``deliver_after`` (Pulsar's
  delayed delivery: Shared subscriptions only, which this broker uses).
* Consuming: a **Shared** subscription (``boostkernel``): competing consumers, each message to one of them.
  ``receiver_queue_size`` is the prefetch. ``ack`` is ``acknowledge`` after the task; a consumer that dies
  or closes has its unacknowledged messages redelivered by the server. ``delivery_count`` is Pulsar's
  ``redelivery_count()`` + 1 (+ ``bk-requeues``).
* ``nack(delay=0)`` is ``negative_acknowledge`` (redelivered after ``negative_ack_delay``); with a delay, a
  copy is sent with ``deliver_after`` and the original acknowledged (a crash in between leaves a duplicate).
* Dead letters: ``dead_letter`` sends the message to the DLQ topic with property ``bk-reason`` and then
  acknowledges it. The subscription also carries Pulsar's **dead-letter policy**
  (``max_redeliver_count = max_deliveries``): the client moves a message redelivered more often to the
  same DLQ topic - that is this plugin's crash-loop limit, and it counts every redelivery, so messages a
  dying consumer had only prefetched are charged too (no running journal here). The DLQ is read on the
  subscription ``boostkernel-dlq``; ``dead_letters()`` receives and leaves them unacknowledged (the
  server redelivers them to that subscription later).
* ``count`` / ``purge`` are not offered: they need Pulsar's admin REST API (backlog, ``clear-backlog``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

try:
    import pulsar  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(f'the pulsar broker needs pulsar-client ({exc}): pip install "boostkernel[pulsar]"') from exc

from boostkernel.broker import Broker, BrokerCapabilities, DeadLetterRecord, Delivery, Outgoing
from boostkernel.errors import BrokerUnavailable, MessageRejected
from boostkernel.logs import mask, mask_url

from ._common import parse

H_ID, H_REASON, H_FAILED_AT, H_REQUEUES = "bk-id", "bk-reason", "bk-failed-at", "bk-requeues"
POLICY_REASON = ("crash-loop or repeated redelivery: delivered more than max_deliveries times "
                 "(Pulsar's dead-letter policy)")


class PulsarBroker(Broker):
    """A Pulsar topic with a Shared subscription. At-least-once: acknowledge after the task."""

    name = "pulsar"
    capabilities = BrokerCapabilities(delay=True, durable=True, batch_publish=True, count=False, purge=False,
                                      recovery_seconds=10.0)
    default_url = "pulsar://127.0.0.1:6650"

    check_at_decoration = True  # __init__ checks the URL and options and does not connect

    def __init__(self, queue: str, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(queue, url, params, **options)
        self.s = parse(self.url or self.default_url, queue, self.options, self.max_crashes)
        self._lock = threading.Lock()
        self._client: Any = None
        self._producer: Any = None
        self._dlq_producer: Any = None
        self._consumer: Any = None
        self._closed = False

    def _connect(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    auth = pulsar.AuthenticationToken(self.s.token) if self.s.token else None
                    self._client = pulsar.Client(
                        self.s.service_url, authentication=auth,
                        operation_timeout_seconds=int(self.s.operation_timeout),
                        connection_timeout_ms=int(self.s.connect_timeout * 1000),
                        logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
        return self._client

    def _unavailable(self, what: str, exc: BaseException) -> BrokerUnavailable:
        return BrokerUnavailable(f"Pulsar at {mask_url(self.s.service_url)}, {what}: "
                                 f"{mask(str(exc) or type(exc).__name__)}")

    def _prod(self, dlq: bool = False) -> Any:
        attr = "_dlq_producer" if dlq else "_producer"
        p = getattr(self, attr)
        if p is None:
            client = self._connect()
            with self._lock:
                p = getattr(self, attr)
                if p is None:
                    try:
                        p = client.create_producer(self.s.dlq_topic if dlq else self.s.topic,
                                                   block_if_queue_full=True, batching_enabled=True,
                                                   batching_max_publish_delay_ms=1)
                    except Exception as exc:  # noqa: BLE001
                        raise self._unavailable("creating a producer", exc) from None
                    setattr(self, attr, p)
        return p

    # --- publishing -------------------------------------------------------------------------------
    def _kw(self, m: Outgoing, now: float) -> dict[str, Any]:
        kw: dict[str, Any] = {"properties": {H_ID: m.id}}
        if m.eta is not None and m.eta - now > 0.0005:
            kw["deliver_after"] = timedelta(seconds=m.eta - now)
        return kw

    def publish(self, message: Outgoing) -> None:
        if self._closed:
            raise BrokerUnavailable(f"pulsar broker for queue {self.queue!r} is closed")
        try:
            self._prod().send(message.body, **self._kw(message, time.time()))
        except BrokerUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._unavailable("send", exc) from None

    def publish_many(self, messages: Sequence[Outgoing]) -> None:
        """``send_async`` for every message, ``flush``, then every callback must report success."""
        if not messages:
            return
        prod = self._prod()
        errors: list[str] = []
        left = [len(messages)]
        done = threading.Event()

        def cb(res: Any, _msg_id: Any) -> None:
            if res != pulsar.Result.Ok:
                errors.append(str(res))
            left[0] -= 1
            if left[0] <= 0:
                done.set()

        now = time.time()
        try:
            for m in messages:
                prod.send_async(m.body, cb, **self._kw(m, now))
            prod.flush()
        except Exception as exc:  # noqa: BLE001
            raise self._unavailable("send_async", exc) from None
        if not done.wait(self.s.operation_timeout):
            raise BrokerUnavailable(f"Pulsar at {mask_url(self.s.service_url)} did not confirm {left[0]} message(s)")
        if errors:
            raise MessageRejected(f"Pulsar refused {len(errors)} message(s): {errors[:3]}")

    # --- consuming --------------------------------------------------------------------------------
    def _sub(self) -> Any:
        c = self._consumer
        if c is None:
            client = self._connect()
            with self._lock:
                c = self._consumer
                if c is None:
                    try:
                        c = client.subscribe(
                            self.s.topic, self.s.subscription, consumer_type=pulsar.ConsumerType.Shared,
                            receiver_queue_size=self.s.receiver_queue_size,
                            negative_ack_redelivery_delay_ms=int(self.s.negative_ack_delay * 1000),
                            initial_position=pulsar.InitialPosition.Earliest,
                            dead_letter_policy=pulsar.ConsumerDeadLetterPolicy(
                                max_redeliver_count=self.s.max_deliveries, dead_letter_topic=self.s.dlq_topic))
                    except Exception as exc:  # noqa: BLE001
                        raise self._unavailable("subscribe", exc) from None
                    self._consumer = c
        return c

    def _delivery(self, msg: Any) -> Delivery:
        props = msg.properties() or {}
        requeues = int(props.get(H_REQUEUES, 0) or 0)
        mid = props.get(H_ID) or str(msg.message_id())
        return Delivery(mid, bytes(msg.data()), msg, int(msg.redelivery_count()) + 1 + requeues, {"properties": props})

    def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        if self._closed:
            return []
        c = self._sub()
        out: list[Delivery] = []
        wait = max(1, int(timeout * 1000))
        while len(out) < max_messages:
            try:
                msg = c.receive(timeout_millis=wait)
            except pulsar.Timeout:
                break
            except Exception as exc:  # noqa: BLE001
                if out:
                    break
                raise self._unavailable("receive", exc) from None
            out.append(self._delivery(msg))
            wait = 1  # the rest of the batch: only what is already in the receiver queue
        return out

    def ack(self, delivery: Delivery) -> None:
        c = self._consumer
        if c is None or self._closed:
            return
        try:
            c.acknowledge(delivery.tag)
        except Exception as exc:  # noqa: BLE001 - closed consumer: the server redelivers the message
            self.log.debug("ack of %s not sent (%s)", delivery.id, exc)

    def nack(self, delivery: Delivery, requeue: bool = True, delay: float = 0.0) -> None:
        c = self._consumer
        if c is None or self._closed:
            return
        if not requeue:
            self.ack(delivery)
            return
        if delay <= 0:
            try:
                c.negative_acknowledge(delivery.tag)
            except Exception as exc:  # noqa: BLE001
                self.log.debug("negative ack of %s not sent (%s)", delivery.id, exc)
            return
        props = dict(delivery.extra.get("properties") or {})
        props[H_ID] = delivery.id
        props[H_REQUEUES] = str(int(props.get(H_REQUEUES, 0) or 0) + 1)
        self._prod().send(delivery.body, properties=props, deliver_after=timedelta(seconds=delay))
        self.ack(delivery)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Send to the DLQ topic with ``bk-reason`` (persisted), then acknowledge the original."""
        props = {H_ID: delivery.id, H_REASON: reason, H_FAILED_AT: str(int(time.time() * 1000))}
        self._prod(dlq=True).send(delivery.body, properties=props)
        self.ack(delivery)

    def _dlq_pass(self, limit: int, keep: Any) -> tuple[list[DeadLetterRecord], int]:
        client = self._connect()
        c = client.subscribe(self.s.dlq_topic, "boostkernel-dlq", consumer_type=pulsar.ConsumerType.Shared,
                             initial_position=pulsar.InitialPosition.Earliest)
        out: list[DeadLetterRecord] = []
        n = 0
        try:
            while len(out) < limit:
                try:
                    msg = c.receive(timeout_millis=1000)
                except pulsar.Timeout:
                    break
                p = msg.properties() or {}
                rec = DeadLetterRecord(p.get(H_ID) or str(msg.message_id()), bytes(msg.data()),
                                       p.get(H_REASON) or POLICY_REASON, int(p.get(H_FAILED_AT, 0) or 0) / 1000.0)
                out.append(rec)
                if keep is not None and keep(rec, msg):
                    c.acknowledge(msg)
                    n += 1
        finally:
            c.close()  # unacknowledged ones are redelivered to the subscription later
        return out, n

    def dead_letters(self, limit: int = 100) -> list[DeadLetterRecord]:
        return self._dlq_pass(limit, None)[0]

    def replay_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        wanted = set(ids) if ids is not None else None

        def move(rec: DeadLetterRecord, _msg: Any) -> bool:
            if wanted is not None and rec.id not in wanted:
                return False
            self._prod().send(rec.body, properties={H_ID: rec.id})
            return True

        return self._dlq_pass(10**9, move)[1]

    def purge_dead_letters(self) -> int:
        return self._dlq_pass(10**9, lambda _r, _m: True)[1]

    def close(self) -> None:
        """Close the consumer (the server redelivers its unacknowledged messages), producers and client."""
        if self._closed:
            return
        self._closed = True
        for obj in (self._consumer, self._producer, self._dlq_producer, self._client):
            if obj is not None:
                try:
                    obj.close()
                except Exception:  # noqa: BLE001 - already closed or never connected
                    pass

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(topic=self.s.topic, subscription=self.s.subscription, dlq_topic=self.s.dlq_topic)
        return d
