"""The ``redis-pubsub`` broker: every subscribed consumer receives every message. **At-most-once.**

Redis pub/sub keeps nothing: a message published while no consumer is subscribed, or while a consumer
is disconnected (Redis restart, network cut, the consumer being restarted), is lost; a message a worker
was running when it died is not redelivered; there is no ack, requeue, count, purge or dead-letter queue
(a failed task is logged). Use it for broadcasts (cache invalidation, config reload, notifications to
every worker), and the ``redis`` or ``redis-streams`` broker for work that must not be lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from boostkernel.broker import Broker, BrokerCapabilities, Delivery, Outgoing
from boostkernel.logs import mask_url, queue_logger

from ._common import CONNECTION_ERRORS, DEFAULT_URL, backoff_delays, client, element, key_base


class RedisPubSubBroker(Broker):
    name = "redis-pubsub"
    capabilities = BrokerCapabilities(
        ack=False, requeue=False, priority=False, delay=False, durable=False, count=False, purge=False,
        fanout=True, batch_publish=True, dead_letter=False, cross_process=True,
    )
    default_url = DEFAULT_URL
    default_store = "redis"

    def __init__(self, queue: str, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(queue, url, params, **options)
        self.redis = client(self.url, self.options)
        self.channel = key_base(queue, self.options) + ":pubsub"
        self.log = queue_logger(queue)
        self._pubsub: Any = None
        self._backoff = backoff_delays()
        self._closed = False

    def publish(self, message: Outgoing) -> None:
        self.redis.publish(self.channel, element(message.id, message.body))

    def publish_many(self, messages: Sequence[Outgoing]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for m in messages:
            pipe.publish(self.channel, element(m.id, m.body))
        pipe.execute()

    def subscribe(self) -> None:
        """Subscribe now (``fetch`` does it on first use). Only messages published after this arrive."""
        if self._pubsub is None:
            ps = self.redis.pubsub(ignore_subscribe_messages=True)
            ps.subscribe(self.channel)
            self._pubsub = ps

    def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        out: list[Delivery] = []
        while len(out) < max_messages and not self._closed:
            left = deadline - time.monotonic()
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
                if out or time.monotonic() >= deadline:
                    break
                continue
            if msg.get("type") != "message":
                continue
            data = msg["data"]
            if data[:1] == b"\x01":
                head, _, _, body = data.split(b"\n", 3)
                out.append(Delivery(head[1:].decode(), body, None, 1))
            else:  # foreign publisher: the payload is the body
                from boostkernel.message import uuid7

                out.append(Delivery(uuid7(), data, None, 1))
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

    def describe(self) -> dict[str, Any]:
        return {"broker": self.name, "queue": self.queue, "url": mask_url(self.url), "guarantee": "at-most-once"}
