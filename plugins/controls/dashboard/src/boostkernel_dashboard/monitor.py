"""The monitor control (``monitor=True``): what the dashboard reads about workers and queues.

Per message it adds to a few numbers under a lock (``after``; ``on_publish`` on the publishing side); the
tasks running now are read from the consumer's in-flight table when reporting. A reporter thread writes, every ``monitor_interval`` seconds, one record per (queue, worker process)
to the booster's store under ``dash:mon:<queue>:<worker id>`` (TTL five intervals, so a dead worker
disappears): the worker's host, pid, concurrency mode and size, when it started, tasks running now, and the
queue's cumulative counters in this process (outcomes, retries, duration sum and histogram buckets). The
worker also registers, every 30 s, in the queue's index ``dash:mon-index:<queue>`` (under a store lock), so
the dashboard reads the records without listing keys.
Publishes are added to the store counter ``dash:published:<queue>`` by a flusher thread of the publishing
process. The dashboard turns successive records into rates.
"""

from __future__ import annotations

import bisect
import os
import socket
import threading
import time
from typing import Any

from boostkernel.control import Control, Repeating, TaskContext
from boostkernel.logs import queue_logger
from boostkernel.message import Envelope

#: Upper bounds (seconds) of the duration histogram buckets (the last one, +Inf, is implicit).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_NOT_FINISHED = ("requeued", "retry")


def mon_key(queue: str, worker: str) -> str:
    return f"dash:mon:{queue}:{worker}"


def index_key(queue: str) -> str:
    """A JSON object ``{worker id: last registration}`` naming the workers of ``queue`` (so readers need not
    list keys: a SCAN of a large Redis store would be slow)."""
    return f"dash:mon-index:{queue}"


#: A worker re-registers in its queue's index this often (and readers drop entries older than 3x this).
REGISTER_EVERY = 30.0


def update_index(store: Any, queue: str, add: str | None = None, drop: tuple[str, ...] = ()) -> None:
    """Add/refresh ``add`` and remove ``drop`` in the queue's worker index, under the store's lock."""
    owner = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
    name = f"dash:mon-index:{queue}"
    deadline = time.monotonic() + 5.0
    while not store.acquire_lock(name, owner, ttl=5.0):
        if time.monotonic() > deadline:
            return  # try again at the next registration
        time.sleep(0.01)
    try:
        index = store.get(index_key(queue)) or {}
        now = time.time()
        index = {w: t for w, t in index.items() if w not in drop and now - float(t) < 3 * REGISTER_EVERY}
        if add is not None:
            index[add] = now
        store.set(index_key(queue), index)
    finally:
        store.release_lock(name, owner)


def published_key(queue: str) -> str:
    return f"dash:published:{queue}"


class _PublishFlusher:
    """One per (process, store, queue): adds the publishes counted locally to the store counter."""

    def __init__(self, store: Any, queue: str, interval: float) -> None:
        self.store, self.queue, self.interval = store, queue, interval
        self.lock = threading.Lock()
        self.pending = 0
        self.thread = threading.Thread(target=self._loop, daemon=True, name=f"boostkernel-monitor-pub-{queue}")
        self.thread.start()

    def add(self) -> None:
        with self.lock:
            self.pending += 1

    def flush(self) -> None:
        with self.lock:
            n, self.pending = self.pending, 0
        if n:
            try:
                self.store.incr(published_key(self.queue), n)
            except Exception:  # noqa: BLE001 - counting must never break publishing
                with self.lock:
                    self.pending += n

    def _loop(self) -> None:
        while True:
            time.sleep(self.interval)
            self.flush()


_flushers: dict[tuple[int, str], _PublishFlusher] = {}
_flushers_lock = threading.Lock()


class Counters:
    """A queue's counters in this process, shared by the monitor and the metrics controls (one object per
    queue, so with both on a message is counted once). ``finish`` is the whole per-message cost."""

    __slots__ = ("lock", "outcomes", "retries", "duration_sum", "buckets")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.outcomes: dict[str, int] = {}
        self.retries = 0
        self.duration_sum = 0.0
        self.buckets = [0] * (len(BUCKETS) + 1)

    def finish(self, ctx: TaskContext, _bucket: Any = bisect.bisect_left, _bounds: Any = BUCKETS) -> None:
        # the hot path of monitor=True / metrics_port: names bound as defaults, the bucket found outside the lock
        status: str = ctx.status._value_  # the plain attribute (Enum's .value and hash are Python code)
        if status in _NOT_FINISHED:
            if status == "retry":
                with self.lock:
                    self.retries += 1
            return
        d = (ctx.finished_at or time.time()) - ctx.started_at
        i = _bucket(_bounds, d)
        outcomes = self.outcomes
        with self.lock:
            outcomes[status] = outcomes.get(status, 0) + 1
            self.duration_sum += d
            self.buckets[i] += 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"outcomes": dict(self.outcomes), "retries": self.retries, "duration_sum": self.duration_sum,
                    "buckets": list(self.buckets)}


_counters: dict[str, Counters] = {}


def counters_of(queue: str) -> Counters:
    """This process's counters of ``queue``."""
    c = _counters.get(queue)
    return c if c is not None else _counters.setdefault(queue, Counters())  # setdefault: racing callers get one


def running_of(control: Control) -> int:
    """Tasks of the control's consumer running now (its in-flight table; no per-message bookkeeping)."""
    consumer = control.consumer
    return len(getattr(consumer, "in_flight", ())) if consumer is not None else 0


class MonitorControl(Control):
    """Reports this worker and its queue's counters to the store for ``boostkernel dashboard``."""

    name = "monitor"
    needs_store = True
    positive_seconds = {"monitor_interval": ""}

    def __init__(self, booster: Any) -> None:
        super().__init__(booster)
        self.interval = float(self.options.monitor_interval) if self.options is not None else 1.0
        self.counters = counters_of(booster.queue)
        # the consumer calls ``self.after``: bound to the counters' method itself, a message costs one call
        self.after = self.counters.finish  # type: ignore[method-assign]
        self.started_at = time.time()
        log = queue_logger(booster.queue)
        self._reporter = Repeating(self.report, self.interval, f"boostkernel-monitor-{booster.queue}", first_now=True,
                                   on_error=lambda: log.debug("monitor report failed", exc_info=True))
        self._flusher: _PublishFlusher | None = None
        self._registered_until = 0.0

    # --- per message --------------------------------------------------------------------------
    def on_publish(self, envelope: Envelope) -> None:
        f = self._flusher
        if f is None:
            key = (id(self.booster.store), self.booster.queue)
            with _flushers_lock:
                f = _flushers.get(key)
                if f is None:
                    f = _flushers[key] = _PublishFlusher(self.booster.store, self.booster.queue, self.interval)
            self._flusher = f
        f.add()

    def after(self, ctx: TaskContext) -> None:
        self.counters.finish(ctx)

    # --- reporting ----------------------------------------------------------------------------
    def start(self) -> None:
        self.started_at = time.time()
        self._reporter.start()

    def stop(self) -> None:
        self._reporter.stop()
        try:
            self.booster.store.delete(mon_key(self.booster.queue, self.worker_id))
            update_index(self.booster.store, self.booster.queue, drop=(self.worker_id,))
        except Exception:  # noqa: BLE001 - best effort: the record expires anyway
            pass
        if self._flusher is not None:
            self._flusher.flush()

    @property
    def worker_id(self) -> str:
        from boostkernel.context import worker_id

        return worker_id()

    def snapshot(self) -> dict[str, Any]:
        p = self.booster.params
        return {"queue": self.booster.queue, "worker": self.worker_id, "host": socket.gethostname(),
                "pid": os.getpid(), "concurrency": p.concurrency, "workers": p.workers,
                "processes": p.processes, "started_at": self.started_at, "at": time.time(),
                "interval": self.interval, "running": running_of(self), **self.counters.snapshot()}

    def report(self) -> None:
        store, queue = self.booster.store, self.booster.queue
        store.set(mon_key(queue, self.worker_id), self.snapshot(), ttl=max(5.0, 5 * self.interval))
        now = time.monotonic()
        if now >= self._registered_until:
            update_index(store, queue, add=self.worker_id)
            self._registered_until = now + REGISTER_EVERY
