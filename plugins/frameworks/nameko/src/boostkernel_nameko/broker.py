"""nameko as a boostkernel broker: each booster is a nameko service, its tasks travel as nameko events.

* ``push``/``publish`` dispatch a nameko **event** (source service ``boostkernel``, event type = the queue)
  with ``{"id", "args", "kwargs", "published_at", "attempt", "eta"}``. The booster's service handles it
  with an ``@event_handler`` of type ``SERVICE_POOL`` with ``reliable_delivery=True``: a durable queue
  ``evt-boostkernel-<queue>--<queue>.handle`` that RabbitMQ keeps while no worker runs (the broker declares
  it at decoration, so nothing pushed before the first worker starts is dropped). nameko acks an event
  after the handler returned: a worker killed mid-task has its events delivered again (at-least-once).
* The same service exposes the function as the nameko **RPC** method ``<queue>.call``: another nameko
  service (``RpcProxy("<queue>")``) or a standalone ``ClusterRpcProxy`` gets the return value synchronously.
* ``max_retries``/``retry_on``/``retry_backoff``/``retry_backoff_max``: nameko has no retries; a failed
  attempt that may be retried is dispatched again as a new event with ``attempt + 1`` and an ``eta`` after
  the backoff, before the failed one is acked.
* ``countdown``/``eta``: nameko has no delayed delivery; the handler waits (a green thread, the event
  unacked) until the eta, so a delayed task holds one of the service's ``max_workers`` slots meanwhile.
* The worker is nameko's ``ServiceRunner`` and needs an **eventlet-patched** process (nameko's own
  ``nameko run`` patches too): ``boostkernel worker your.module --concurrency eventlet``. Publishing
  needs no patching.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from dataclasses import replace
from typing import Any

from boostkernel.errors import ConfigError
from boostkernel.framework import FrameworkBroker, FrameworkWorker, GroupWorker, TaskRunner, by_url, worker_count
from boostkernel.logs import mask_url
from boostkernel.message import Envelope

SOURCE = "boostkernel"
log = logging.getLogger("boostkernel.nameko")

NOT_PATCHED = (
    "nameko runs its services on eventlet green threads and needs the process monkey-patched before anything "
    "else is imported (nameko's own `nameko run` does the same). Start the worker with\n"
    "    boostkernel worker your.module --concurrency eventlet\n"
    "(or BOOSTKERNEL_CONCURRENCY=eventlet), or call, first thing in your program,\n"
    "    import eventlet\n    eventlet.monkey_patch()\n"
    "Publishing (push) works in any process."
)


def _quiet_import() -> None:
    with warnings.catch_warnings():  # eventlet warns on import that it is deprecated (see the README)
        warnings.simplefilter("ignore")
        import eventlet  # noqa: F401
        import nameko.events  # noqa: F401


def is_patched() -> bool:
    _quiet_import()
    from eventlet import patcher

    return all(patcher.is_monkey_patched(m) for m in ("socket", "thread", "time", "select"))


def queue_name(queue: str) -> str:
    """The durable queue nameko's SERVICE_POOL handler of the booster consumes."""
    return f"evt-{SOURCE}-{queue}--{queue}.handle"


def config_for(url: str, options: dict[str, Any], workers: int = 10) -> dict[str, Any]:
    return {"AMQP_URI": url, "max_workers": workers, **(options.get("config") or {})}


_declared: set[tuple[str, str]] = set()
_dispatchers: dict[str, Any] = {}
_lock = threading.Lock()


def declare(url: str, queue: str) -> None:
    """Declare the events exchange, the handler's durable queue and its binding exactly as nameko does."""
    if (url, queue) in _declared:
        return
    _quiet_import()
    from kombu import Connection, Exchange, Queue

    exchange = Exchange(f"{SOURCE}.events", type="topic", durable=True, auto_delete=False)
    q = Queue(queue_name(queue), exchange=exchange, routing_key=queue, durable=True, auto_delete=False,
              exclusive=False)
    with Connection(url, connect_timeout=10) as conn:
        q(conn.default_channel).declare()
    with _lock:
        _declared.add((url, queue))


def dispatcher(url: str, options: dict[str, Any]) -> Any:
    d = _dispatchers.get(url)
    if d is None:
        _quiet_import()
        from nameko.standalone.events import event_dispatcher

        with _lock:
            d = _dispatchers.get(url)
            if d is None:
                d = _dispatchers[url] = event_dispatcher(config_for(url, options))
    return d


def service_class(booster: Any) -> type:
    """A nameko service named after the booster's queue: an event handler for pushed tasks and an RPC method."""
    _quiet_import()
    from nameko.events import SERVICE_POOL, event_handler
    from nameko.rpc import rpc

    p = booster.params
    url, options, queue = p.broker_url, p.broker_options, booster.queue
    runner: list[TaskRunner] = []

    def get_runner() -> TaskRunner:
        if not runner:
            runner.append(TaskRunner(booster))
        return runner[0]

    def handle(self: Any, payload: dict[str, Any]) -> None:
        eta = payload.get("eta")
        if eta is not None and eta > time.time():
            time.sleep(eta - time.time())  # green (patched): the event stays unacked until it ran
        attempt = int(payload.get("attempt") or 0)
        r = get_runner()
        try:
            r.run(str(payload["id"]), payload.get("args") or [], payload.get("kwargs") or {}, attempt,
                  payload.get("published_at"))
        except Exception as exc:  # noqa: BLE001 - recorded by the runner; nameko would only log it again
            if r.will_retry(exc, attempt):
                delay = min(float(p.retry_backoff_max), float(p.retry_backoff) * 2 ** attempt)
                dispatcher(url, options)(SOURCE, queue, {**payload, "attempt": attempt + 1,
                                                         "eta": time.time() + delay})
            else:
                log.warning("task %s of queue %r failed: %s: %s", payload.get("id"), queue,
                            type(exc).__name__, exc)

    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        import uuid

        return get_runner().run(uuid.uuid4().hex, list(args), kwargs, 0, time.time())

    handle.__name__ = "handle"
    call.__name__ = "call"
    attrs = {
        "name": queue,
        "handle": event_handler(SOURCE, queue, handler_type=SERVICE_POOL, reliable_delivery=True)(handle),
        "call": rpc(call),
    }
    return type(f"Boosted_{queue}", (), attrs)


class NamekoWorker(FrameworkWorker):
    def __init__(self, name: str, runner: Any) -> None:
        super().__init__(name)
        self.runner = runner

    def _stop_worker(self, timeout: float) -> None:
        import eventlet

        with eventlet.Timeout(timeout, False):
            self.runner.stop()  # graceful: stops taking events, waits for running workers
            return
        self.runner.kill()


class NamekoBroker(FrameworkBroker):
    name = "nameko"
    capabilities = replace(FrameworkBroker.capabilities, ack=True, durable=True)
    default_url = "amqp://guest:guest@127.0.0.1:5672/"
    url_schemes = ("amqp", "amqps", "pyamqp")
    framework_params = frozenset({"max_retries", "retry_on", "retry_backoff", "retry_backoff_max", "retry_mode"})
    unsupported_reasons = {
        "timeout": "nameko has no time limit for service workers",
        "qps": "nameko has no rate limit",
        "expires": "nameko events carry no expiry",
        "retry_jitter": "retries are dispatched as new nameko events with a fixed exponential backoff",
    }
    option_names = frozenset({"config"})
    message_options = frozenset({"eta"})

    @classmethod
    def check_framework_params(cls, p: Any) -> None:
        if not p.queue.replace("_", "").replace("-", "").replace(".", "").isalnum():
            raise ConfigError(f"@boost({p.queue!r}, broker='nameko'): the queue is a nameko service name; use "
                              f"letters, digits, '_', '-' and '.' only")

    @classmethod
    def register(cls, booster: Any) -> Any:
        declare(booster.params.broker_url, booster.queue)
        return service_class(booster)

    @classmethod
    def _start_worker(cls, boosters: list[Any]) -> FrameworkWorker:
        if not is_patched():
            raise ConfigError(NOT_PATCHED)
        from nameko.runners import ServiceRunner

        parts: list[FrameworkWorker] = []
        for url, group in by_url(boosters).items():
            runner = ServiceRunner(config_for(url, group[0].params.broker_options, worker_count(group)))
            for b in group:
                runner.add_service(service_class(b))
            runner.start()
            parts.append(NamekoWorker(f"nameko:{','.join(b.queue for b in group)}@{mask_url(url)}", runner))
        return parts[0] if len(parts) == 1 else GroupWorker("nameko", parts)

    # --- instance side: publishing, count, purge ------------------------------------------------
    def send(self, env: Envelope) -> None:
        url = self.url or self.default_url or ""
        declare(url, self.queue)
        dispatcher(url, self.options)(SOURCE, self.queue, {
            "id": env.id, "args": list(env.args), "kwargs": env.kwargs, "published_at": env.published_at,
            "attempt": env.attempt, "eta": env.eta})

    def _channel_call(self, fn: str) -> int:
        _quiet_import()
        from kombu import Connection

        url = self.url or self.default_url or ""
        declare(url, self.queue)
        with Connection(url, connect_timeout=10) as conn:
            ch: Any = conn.default_channel
            if fn == "count":
                return int(ch.queue_declare(queue_name(self.queue), passive=True).message_count)
            return int(ch.queue_purge(queue_name(self.queue)) or 0)

    def count(self) -> int:
        return self._channel_call("count")

    def purge(self) -> int:
        return self._channel_call("purge")

    def describe(self) -> dict[str, Any]:
        import nameko

        return {**super().describe(), "framework": "nameko", "nameko": getattr(nameko, "__version__", "?")}
