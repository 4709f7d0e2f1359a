"""The ``redis-pubsub`` broker: every subscribed consumer receives every message. **At-most-once.**

Redis pub/sub keeps nothing: a message published while no consumer is subscribed, or while a consumer
is disconnected (Redis restart, network cut, the consumer being restarted), is lost; a message a worker
was running when it died is not redelivered; there is no ack, requeue, count, purge or dead-letter queue
(a failed task is logged). A message with a countdown/eta is held in each subscriber's memory until it is
due (so it runs once per subscriber); a subscriber that stops before then drops it. Use it for broadcasts
(cache invalidation, config reload, notifications to every worker), and the ``redis`` or ``redis-streams``
broker for work that must not be lost.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from collections.abc import Sequence
from typing import Any

from boostkernel.broker import Broker, BrokerCapabilities, Delivery, Outgoing
from boostkernel.logs import mask_url

from ._common import (
    CONNECTION_ERRORS,
    DEFAULT_URL,
    backoff_delays,
    client,
    element,
    is_cluster,
    key_base,
    pool_need,
)


class RedisPubSubBroker(Broker):
    name = "redis-pubsub"
    capabilities = BrokerCapabilities(
        ack=False, requeue=False, priority=False, delay=True, durable=False, count=False, purge=False,
        fanout=True, batch_publish=True, dead_letter=False, cross_process=True,
    )
    default_url = DEFAULT_URL
    default_store = "redis"

    def __init__(self, queue: str, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(queue, url, params, **options)
        self.redis = client(self.url, self.options, pool_need(params))
        self.channel = key_base(queue, self.options) + ":pubsub"
        self._cluster = is_cluster(self.redis)
        self._publish_script = self.redis.register_script(
            "for i = 1, #ARGV do redis.call('PUBLISH', KEYS[1], ARGV[i]) end return #ARGV")
        self._pubsub: Any = None
        self._backoff = backoff_delays()
        self._closed = False
        # Delayed messages this subscriber received before their eta: (eta, seq, delivery), a heap. Each
        # subscriber holds its own copy until due, so a delayed message runs once per subscriber (the kernel's
        # fallback for brokers without delay re-publishes, which on a fan-out channel reaches everyone again).
        self._waiting: list[tuple[float, int, Delivery]] = []
        self._seq = itertools.count()

    @staticmethod
    def _element(m: Outgoing) -> bytes:
        """``\x01<id>\n<eta>\n0\n<body>`` (eta ``0``: none). Readers before the eta field ignored that
        field, so old and new subscribers read each other's messages."""
        if "\n" in m.id:
            element(m.id, b"")  # raises the ConfigError
        eta = b"%r" % m.eta if m.eta is not None and m.eta > time.time() else b"0"
        return b"\x01%b\n%b\n0\n%b" % (m.id.encode(), eta, m.body)

    def publish(self, message: Outgoing) -> None:
        self.redis.publish(self.channel, self._element(message))

    def publish_many(self, messages: Sequence[Outgoing]) -> None:
        if self._cluster:  # a cluster pipeline refuses PUBLISH: one script call per 1000 (the channel's slot)
            for i in range(0, len(messages), 1000):
                self._publish_script(keys=[self.channel], args=[self._element(m) for m in messages[i:i + 1000]])
            return
        pipe = self.redis.pipeline(transaction=False)
        for m in messages:
            pipe.publish(self.channel, self._element(m))
        pipe.execute()

    def subscribe(self) -> None:
        """Subscribe now (``fetch`` does it on first use). Only messages published after this arrive."""
        if self._pubsub is None:
            ps = self.redis.pubsub(ignore_subscribe_messages=True)
            ps.subscribe(self.channel)
            self._pubsub = ps

    def _due(self, out: list[Delivery], max_messages: int) -> None:
        waiting, now = self._waiting, time.time()
        while waiting and waiting[0][0] <= now and len(out) < max_messages:
            out.append(heapq.heappop(waiting)[2])

    def _receive(self, data: bytes, out: list[Delivery]) -> None:
        if data[:1] != b"\x01":  # foreign publisher: the payload is the body
            from boostkernel.message import uuid7

            out.append(Delivery(uuid7(), data, None, 1))
            return
        head, eta_field, _, body = data.split(b"\n", 3)
        d = Delivery(head[1:].decode(), body, None, 1)
        try:
            eta = float(eta_field)
        except ValueError:
            eta = 0.0
        if not eta and b'"eta"' in body:  # from a publisher that did not write the eta field
            from boostkernel.errors import MessageDecodeError
            from boostkernel.message import decode

            try:
                eta = decode(body, self.queue).eta or 0.0
            except MessageDecodeError:
                eta = 0.0  # the worker dead-letters it
        if eta > time.time():
            heapq.heappush(self._waiting, (eta, next(self._seq), d))
        else:
            out.append(d)

    def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        out: list[Delivery] = []
        self._due(out, max_messages)
        while len(out) < max_messages and not self._closed:
            left = deadline - time.monotonic()
            if self._waiting:
                left = min(left, self._waiting[0][0] - time.time())
            try:
                self.subscribe()
                msg = self._pubsub.get_message(timeout=max(0.0, left) if not out else 0.0)
                self._backoff = backoff_delays()
            except CONNECTION_ERRORS as exc:
                self._drop()
                delay = self._backoff()
                self.log.warning("pub/sub connection of %r lost (%s); resubscribing in %.2fs (messages published "
                                 "meanwhile are lost: at-most-once)", self.queue, exc, delay)
                time.sleep(min(delay, max(0.0, left)))
                if time.monotonic() >= deadline:
                    break
                continue
            if msg is None:
                self._due(out, max_messages)
                if out or time.monotonic() >= deadline:
                    break
                continue
            if msg.get("type") == "message":
                self._receive(msg["data"], out)
        return out

    def ack(self, delivery: Delivery) -> None:
        """Nothing to do: pub/sub has no acknowledgements."""

    def nack(self, delivery: Delivery, requeue: bool = True, delay: float = 0.0) -> None:
        if requeue:
            self.log.warning("message %s cannot be requeued on the at-most-once redis-pubsub broker; dropped",
                             delivery.id)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        logging.getLogger("boostkernel.redis").error(
            "message %s on redis-pubsub queue %r failed (%s); pub/sub keeps no dead-letter queue, dropped",
            delivery.id, self.queue, reason)

    def _drop(self) -> None:
        ps, self._pubsub = self._pubsub, None
        if ps is not None:
            try:
                ps.close()
            except Exception:  # noqa: BLE001 - the connection is already broken
                pass

    def close(self) -> None:
        self._closed = True
        self._drop()
        if self._waiting:
            self.log.warning("redis-pubsub queue %r: %d delayed message(s) not yet due are dropped on close "
                             "(at-most-once)", self.queue, len(self._waiting))
            self._waiting.clear()

    def describe(self) -> dict[str, Any]:
        return {"broker": self.name, "queue": self.queue, "url": mask_url(self.url), "guarantee": "at-most-once"}
