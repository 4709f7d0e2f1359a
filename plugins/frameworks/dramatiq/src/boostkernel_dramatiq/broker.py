"""dramatiq as a boostkernel broker: one dramatiq actor per booster, dramatiq's own worker.

Parameter mapping (``@boost`` → dramatiq actor option):

* ``max_retries`` + ``retry_on`` → ``retry_when(retries, exc)`` of the Retries middleware;
* ``retry_backoff`` / ``retry_backoff_max`` (s) → ``min_backoff`` / ``max_backoff`` (ms; dramatiq always
  adds jitter, so ``retry_jitter=False`` is refused);
* ``timeout`` (s) → ``time_limit`` (ms, the TimeLimit middleware; without ``timeout`` no limit applies);
* ``expires`` (s) → ``max_age`` (ms, the AgeLimit middleware);
* ``countdown``/``eta`` → ``delay`` (dramatiq's delay queue ``<queue>.DQ``).

``broker_options``: ``actor_options`` (dict passed to ``dramatiq.actor``), ``broker_kwargs`` (dict passed
to ``RedisBroker``/``RabbitmqBroker``, e.g. ``{"heartbeat_timeout": 15000}`` or ``{"max_priority": 9}``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage

from boostkernel.errors import ConfigError
from boostkernel.framework import (
    FrameworkBroker,
    FrameworkWorker,
    GroupWorker,
    TaskRunner,
    by_url,
    eta_of,
    worker_count,
)
from boostkernel.logs import mask_url
from boostkernel.message import Envelope

NO_TIME_LIMIT_MS = 2**31 - 1  # dramatiq's TimeLimit default is 10 minutes; boostkernel's default is none

_publishers: dict[str, dramatiq.Broker] = {}
_publishers_lock = threading.Lock()


def make_dramatiq_broker(url: str, options: dict[str, Any]) -> dramatiq.Broker:
    """A dramatiq broker for ``url`` (redis:// or amqp://) with the CurrentMessage middleware."""
    kwargs = dict(options.get("broker_kwargs") or {})
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("amqp", "amqps"):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        kwargs.setdefault("confirm_delivery", True)  # publish is at-least-once: wait for the broker's confirm
        broker: dramatiq.Broker = RabbitmqBroker(url=url, **kwargs)
    else:
        from dramatiq.brokers.redis import RedisBroker

        broker = RedisBroker(url=url, **kwargs)
    broker.add_middleware(CurrentMessage())
    return broker


def publisher(url: str, options: dict[str, Any]) -> dramatiq.Broker:
    b = _publishers.get(url)
    if b is None:
        with _publishers_lock:
            b = _publishers.get(url)
            if b is None:
                b = _publishers[url] = make_dramatiq_broker(url, options)
    return b


def actor_options(booster: Any) -> dict[str, Any]:
    p = booster.params
    max_retries, retry_on = p.max_retries, p.retry_on

    def retry_when(retries: int, exc: BaseException) -> bool:
        return retries < max_retries and isinstance(exc, retry_on)

    opts: dict[str, Any] = {
        "retry_when": retry_when,
        "min_backoff": max(1, int(p.retry_backoff * 1000)),
        "max_backoff": max(1, int(p.retry_backoff_max * 1000)),
        "time_limit": int(p.timeout * 1000) if p.timeout else NO_TIME_LIMIT_MS,
    }
    if p.expires:
        opts["max_age"] = int(p.expires * 1000)
    opts.update(p.broker_options.get("actor_options") or {})
    return opts


def declare(booster: Any, broker: dramatiq.Broker) -> dramatiq.Actor[Any, Any]:
    """Declare the booster's actor on ``broker`` under the queue's name (publisher and worker side)."""
    runner: list[TaskRunner] = []

    def run(*args: Any, **kwargs: Any) -> Any:
        if not runner:
            runner.append(TaskRunner(booster))
        msg = CurrentMessage.get_current_message()
        if msg is None:  # pragma: no cover - the middleware is always installed by make_dramatiq_broker
            raise RuntimeError("dramatiq CurrentMessage middleware missing")
        attempt = int(msg.options.get("retries", 0))
        runner[0].run(msg.message_id, args, kwargs, attempt, msg.message_timestamp / 1000.0)
        # The result is in boostkernel's store (results=True); returning it to dramatiq would only make its
        # worker warn, for every task, that it has no Results middleware to keep it.
        return None

    run.__name__ = run.__qualname__ = booster.queue
    return dramatiq.actor(actor_name=booster.queue, queue_name=booster.queue, broker=broker,
                          **actor_options(booster))(run)


class DramatiqWorker(FrameworkWorker):
    def __init__(self, name: str, worker: dramatiq.Worker, broker: dramatiq.Broker) -> None:
        super().__init__(name)
        self.worker, self.broker = worker, broker

    def _stop_worker(self, timeout: float) -> None:
        try:
            self.worker.stop(timeout=int(timeout * 1000))
        finally:
            self.broker.close()


class DramatiqBroker(FrameworkBroker):
    name = "dramatiq"
    # the framework brokers' common capabilities (FrameworkBroker), plus what this framework adds
    capabilities = replace(FrameworkBroker.capabilities, ack=True, durable=True)
    url_schemes = ("redis", "rediss", "amqp", "amqps")
    framework_params = frozenset({"max_retries", "retry_on", "retry_backoff", "retry_backoff_max", "timeout",
                                  "expires", "retry_mode"})
    unsupported_reasons = {
        "qps": "dramatiq has no per-actor rate limit (its rate limiters are called inside the task's code)",
        "retry_jitter": "dramatiq always adds jitter (1x-2x) to its retry backoff",
    }
    option_names = frozenset({"actor_options", "broker_kwargs"})
    message_options = frozenset({"eta", "expires", "priority"})

    @classmethod
    def honours_priority(cls, p: Any) -> bool:
        """dramatiq orders by priority only on RabbitMQ with a ``max_priority`` queue argument."""
        url = (p.broker_url or "").lower()
        return url.startswith("amqp") and bool((p.broker_options.get("broker_kwargs") or {}).get("max_priority"))

    @classmethod
    def check_framework_params(cls, p: Any) -> None:
        unknown = set(p.broker_options.get("actor_options") or {}) - set(actor_options_allowed())
        if unknown:
            raise ConfigError(f"@boost({p.queue!r}, broker='dramatiq'): unknown actor_options {sorted(unknown)}; "
                              f"dramatiq accepts {sorted(actor_options_allowed())}")

    @classmethod
    def register(cls, booster: Any) -> Any:
        return declare(booster, publisher(booster.params.broker_url, booster.params.broker_options))

    @classmethod
    def _start_worker(cls, boosters: list[Any]) -> FrameworkWorker:
        parts: list[FrameworkWorker] = []
        for url, group in by_url(boosters).items():
            broker = make_dramatiq_broker(url, group[0].params.broker_options)
            for b in group:
                declare(b, broker)
            worker = dramatiq.Worker(broker, queues={b.queue for b in group}, worker_threads=worker_count(group),
                                     worker_timeout=100)
            worker.start()
            parts.append(DramatiqWorker(f"dramatiq:{','.join(b.queue for b in group)}@{mask_url(url)}",
                                        worker, broker))
        return parts[0] if len(parts) == 1 else GroupWorker("dramatiq", parts)

    # --- instance side: publishing, count, purge ------------------------------------------------
    @property
    def dq(self) -> dramatiq.Broker:
        return publisher(self.url or "", self.options)

    def send(self, env: Envelope) -> None:
        broker = self.dq
        actor = broker.get_actor(self.queue)
        opts: dict[str, Any] = {}
        if "expires" in env.options:
            opts["max_age"] = int(float(env.options["expires"]) * 1000)
        if "priority" in env.options:
            if not getattr(broker, "max_priority", None):
                raise ConfigError(
                    f"queue {self.queue!r}: dramatiq honours a per-message priority only on RabbitMQ with "
                    "broker_options={'broker_kwargs': {'max_priority': 9}}")
            opts["broker_priority"] = int(env.options["priority"])
        message = actor.message_with_options(args=tuple(env.args), kwargs=env.kwargs, **opts)
        message = message.copy(message_id=env.id, message_timestamp=int(env.published_at * 1000))
        eta = eta_of(env)
        delay = None if eta is None else max(1, int((eta - time.time()) * 1000))
        broker.enqueue(message, delay=delay)

    def _redis_counts(self) -> int:
        client = self.dq.client  # type: ignore[attr-defined]
        ns = self.dq.namespace  # type: ignore[attr-defined]
        return int(client.llen(f"{ns}:{self.queue}")) + int(client.llen(f"{ns}:{self.queue}.DQ"))

    def count(self) -> int:
        broker = self.dq
        if hasattr(broker, "get_queue_message_counts"):
            ready, delayed, _dead = broker.get_queue_message_counts(self.queue)
            return int(ready) + int(delayed)
        return self._redis_counts()

    def purge(self) -> int:
        n = self.count()
        self.dq.flush(self.queue)
        return n

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "framework": "dramatiq", "dramatiq": dramatiq.__version__}


def actor_options_allowed() -> set[str]:
    names: set[str] = set()
    for m in dramatiq.middleware.default_middleware:
        names |= set(m().actor_options)
    return names
