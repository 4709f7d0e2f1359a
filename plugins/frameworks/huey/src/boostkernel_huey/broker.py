"""huey as a boostkernel broker: one ``RedisHuey`` (named after the queue) per booster, huey's own consumer.

Messages are JSON (:class:`JSONSerializer`), never pickle: a huey message names its task by a string that
huey looks up in its registry, so nothing is imported from a message.

Parameter mapping (``@boost`` → huey task option):

* ``max_retries`` → ``retries``; ``retry_backoff`` (s) → ``retry_delay`` with ``retry_backoff=2`` (delays
  b, 2b, 4b … like boostkernel's, but with no jitter and no cap: ``retry_backoff_max`` is refused);
  ``retry_on`` → a non-matching exception sets ``task.retries = 0`` before huey sees it;
* ``expires``, per-message ``expires`` → ``expires``; ``countdown``/``eta`` → ``eta`` (huey's schedule in
  Redis, moved by the consumer's scheduler every second);
* ``timeout`` is refused: huey enforces time limits only with process/greenlet workers, and boostkernel
  runs huey's consumer in-process with thread workers.

``broker_options``: ``task_options`` (dict for ``huey.task``), ``storage`` (dict for ``RedisStorage``,
e.g. ``{"read_timeout": 1}``), ``consumer`` (dict for ``huey.consumer.Consumer``).
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import replace
from typing import Any

import orjson
from huey import RedisHuey
from huey.consumer import Consumer
from huey.registry import Message
from huey.serializer import Serializer

from boostkernel.errors import ConfigError
from boostkernel.framework import FrameworkBroker, FrameworkWorker, GroupWorker, TaskRunner, eta_of
from boostkernel.logs import mask_url
from boostkernel.message import Envelope

_hueys: dict[tuple[str, str], RedisHuey] = {}
_tasks: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()
_DATETIME_FIELDS = ("eta", "expires_resolved")


class JSONSerializer(Serializer):  # type: ignore[misc]
    """huey's messages as JSON objects (huey's default is pickle)."""

    def _serialize(self, data: Any) -> bytes:
        if isinstance(data, Message):
            d = data._asdict()
            for name in ("on_complete", "on_error", "chord_config"):
                if d.get(name) is not None:
                    raise ValueError(f"boostkernel's huey messages carry no {name} (pipelines are not used)")
            for name in _DATETIME_FIELDS:
                if isinstance(d.get(name), dt.datetime):
                    d[name] = d[name].isoformat()
            if isinstance(d.get("expires"), dt.datetime):
                d["expires"] = d["expires"].isoformat()
            return orjson.dumps({"huey_message": d})
        return orjson.dumps({"value": data})

    def _deserialize(self, data: bytes) -> Any:
        obj = orjson.loads(data)
        if not isinstance(obj, dict):
            raise ValueError("not a boostkernel huey message")
        if "huey_message" in obj:
            d = obj["huey_message"]
            for name in _DATETIME_FIELDS:
                if isinstance(d.get(name), str):
                    d[name] = dt.datetime.fromisoformat(d[name])
            d["args"] = tuple(d.get("args") or ())
            return Message(**{k: d.get(k) for k in Message._fields})
        return obj.get("value")


def huey_for(url: str, queue: str, options: dict[str, Any]) -> RedisHuey:
    key = (url, queue)
    h = _hueys.get(key)
    if h is None:
        with _lock:
            h = _hueys.get(key)
            if h is None:
                storage = {"blocking": True, "read_timeout": 1, **(options.get("storage") or {})}
                h = _hueys[key] = RedisHuey(name=queue, url=url, results=False, utc=True,
                                            serializer=JSONSerializer(), **storage)
    return h


def task_for(booster: Any) -> Any:
    """Register (once per process, per booster) the booster's huey task named after the queue."""
    p = booster.params
    key = (p.broker_url, booster.queue)
    h = huey_for(p.broker_url, booster.queue, p.broker_options)
    with _lock:
        old = _tasks.get(key)
        if old is not None:
            old.unregister()
        runner: list[TaskRunner] = []
        max_retries = p.max_retries

        def execute(task: Any) -> Any:
            if not runner:
                runner.append(TaskRunner(booster))
            r = runner[0]
            args, kwargs = task.data
            attempt = max_retries - (task.retries or 0) if max_retries else 0

            def retrying(exc: BaseException) -> bool:
                if not isinstance(exc, r.retry_on):
                    task.retries = 0  # huey would retry every exception: honour retry_on
                    return False
                return bool(task.retries)

            return r.run(task.id, args, kwargs, attempt, None, retrying)

        def placeholder(*args: Any, **kwargs: Any) -> None:  # pragma: no cover - replaced by execute
            raise RuntimeError("boostkernel huey task called directly")

        placeholder.__name__ = placeholder.__qualname__ = booster.queue
        opts: dict[str, Any] = {"retries": p.max_retries, "name": booster.queue}
        if p.retry_backoff:
            opts["retry_delay"] = p.retry_backoff
            opts["retry_backoff"] = 2
        if p.expires:
            opts["expires"] = p.expires
        opts.update(p.broker_options.get("task_options") or {})
        wrapper = h.task(**opts)(placeholder)
        wrapper.task_class.execute = execute
        _tasks[key] = wrapper
    return wrapper


class _Consumer(Consumer):  # type: ignore[misc]
    """huey's consumer, run from a background thread: no signal handlers (main thread only)."""

    def _set_signal_handlers(self) -> None:
        pass


class HueyWorker(FrameworkWorker):
    def __init__(self, name: str, consumer: _Consumer) -> None:
        super().__init__(name)
        self.consumer = consumer

    def _stop_worker(self, timeout: float) -> None:
        self.consumer.shutdown_timeout = timeout
        self.consumer.stop(graceful=True)


class HueyBroker(FrameworkBroker):
    name = "huey"
    # the framework brokers' common capabilities (FrameworkBroker), plus what this framework adds
    capabilities = replace(FrameworkBroker.capabilities, delay=True)
    framework_params = frozenset({"max_retries", "retry_on", "retry_backoff", "retry_jitter", "expires",
                                  "retry_mode"})
    unsupported_reasons = {
        "timeout": "huey enforces time limits only with process/greenlet workers, and boostkernel runs huey's "
                   "consumer in-process with thread workers",
        "retry_backoff_max": "huey's retry delay grows without a cap",
        "qps": "huey's rate_limit is a fixed window used inside the task's code, not starts per second",
    }
    option_names = frozenset({"task_options", "storage", "consumer"})
    message_options = frozenset({"eta", "expires"})

    @classmethod
    def register(cls, booster: Any) -> Any:
        return task_for(booster)

    @classmethod
    def _start_worker(cls, boosters: list[Any]) -> FrameworkWorker:
        parts: list[FrameworkWorker] = []
        for b in boosters:
            p = b.params
            h = huey_for(p.broker_url, b.queue, p.broker_options)
            task_for(b)  # re-register: the latest booster of the queue runs
            kw = {"workers": p.workers, "worker_type": "thread", "periodic": False, "initial_delay": 0.05,
                  "backoff": 1.15, "max_delay": 1.0, "check_worker_health": False,
                  **(p.broker_options.get("consumer") or {})}
            consumer = _Consumer(h, **kw)
            consumer.start()
            parts.append(HueyWorker(f"huey:{b.queue}@{mask_url(p.broker_url)}", consumer))
        return parts[0] if len(parts) == 1 else GroupWorker("huey", parts)

    # --- instance side ----------------------------------------------------------------------------
    @property
    def huey(self) -> RedisHuey:
        return huey_for(self.url or "", self.queue, self.options)

    def send(self, env: Envelope) -> None:
        wrapper = _tasks.get((self.url or "", self.queue))
        if wrapper is None:
            raise ConfigError(f"queue {self.queue!r} has no huey task in this process (decorate it with @boost)")
        eta = eta_of(env)
        task = wrapper.task_class(
            tuple(env.args), env.kwargs, id=env.id,
            eta=None if eta is None else dt.datetime.fromtimestamp(eta, dt.timezone.utc).replace(tzinfo=None),
            expires=env.options.get("expires"),
        )
        self.huey.enqueue(task)

    def count(self) -> int:
        h = self.huey
        return int(h.pending_count()) + int(h.scheduled_count())

    def purge(self) -> int:
        n = self.count()
        self.huey.storage.flush_queue()
        self.huey.storage.flush_schedule()
        return n

    def describe(self) -> dict[str, Any]:
        import huey

        return {**super().describe(), "framework": "huey", "huey": huey.__version__}
