"""Prometheus metrics: each worker's own (``metrics_port=...``) and the dashboard's ``/metrics``.

Metric names (the same on a worker and on the dashboard, which sums the monitor records of every worker):

* ``boostkernel_tasks_total{queue, outcome}`` - finished tasks by outcome (success, failure, dead, …)
* ``boostkernel_task_duration_seconds{queue}`` - histogram of run durations
* ``boostkernel_tasks_in_flight{queue}`` - tasks running now
* ``boostkernel_task_retries_total{queue}`` - runs that ended in a retry
* ``boostkernel_queue_depth{queue}`` - messages waiting (broker count)
* ``boostkernel_dead_letters{queue}`` - messages in the dead-letter queue (capped at 10,000 when sampled)

A worker's metrics cost nothing when ``metrics_port`` is unset: the control is then not instantiated. When
set, a message costs one :meth:`~.monitor.Counters.finish` (shared with ``monitor=True``); the figures are
turned into metrics when Prometheus scrapes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from boostkernel.control import Control, TaskContext
from boostkernel.errors import ConfigError

from .monitor import BUCKETS, counters_of, running_of

_lock = threading.Lock()
_servers: dict[tuple[str, int], Any] = {}
#: queue -> the metrics control of that queue's consumer in this process (read at scrape time)
_active: dict[str, MetricsControl] = {}
_registered = False


class MetricsControl(Control):
    """Serves this worker process's Prometheus metrics on ``metrics_port``.

    The figures are the queue's :class:`~.monitor.Counters`, read when Prometheus scrapes; a message costs
    what ``Counters.finish`` costs, and nothing more when ``monitor=True`` already counts it."""

    name = "metrics"

    def __new__(cls, booster: Any) -> MetricsControl:
        if cls is MetricsControl and not getattr(booster.params, "monitor", False):
            return super().__new__(_CountingMetricsControl)  # nobody else counts this queue's messages
        return super().__new__(cls)

    def __init__(self, booster: Any) -> None:
        super().__init__(booster)
        self.counters = counters_of(booster.queue)
        self.port: int | None = None

    @classmethod
    def check(cls, booster: Any) -> None:
        super().check(booster)
        v = booster.params.metrics_port
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 65535:
            raise ConfigError(f"metrics_port={v!r} on queue {booster.params.queue!r}: must be a TCP port "
                              "(0-65535; 0 picks a free one)")

    def start(self) -> None:
        global _registered
        host = str(self.params.metrics_host)
        port = int(self.params.metrics_port)
        with _lock:
            _active[self.booster.queue] = self
            register, _registered = not _registered, True
        if register:
            from prometheus_client import REGISTRY

            REGISTRY.register(WorkerCollector())
        with _lock:
            server = _servers.get((host, port))
            if server is None:
                from prometheus_client import start_http_server

                started = start_http_server(port, addr=host)
                server = _servers[(host, port)] = started[0] if isinstance(started, tuple) else started
        self.port = int(server.server_address[1]) if server is not None else port

    def stop(self) -> None:
        with _lock:
            if _active.get(self.booster.queue) is self:
                del _active[self.booster.queue]


class _CountingMetricsControl(MetricsControl):
    """The metrics control of a booster without ``monitor=True``: it counts the messages itself."""

    def __init__(self, booster: Any) -> None:
        super().__init__(booster)
        # the consumer calls ``self.after``: bound to the counters' method itself, a message costs one call
        self.after = self.counters.finish  # type: ignore[method-assign]

    def after(self, ctx: TaskContext) -> None:
        self.counters.finish(ctx)


def _safe(fn: Any) -> float | None:
    try:
        return float(fn())
    except Exception:  # noqa: BLE001 - a broker that cannot count
        return None


def server_port(host: str, port: int) -> int | None:
    """The port a worker's metrics server listens on (useful with ``metrics_port=0``)."""
    with _lock:
        for (h, p), s in _servers.items():
            if h == host and (p == port or port == 0):
                return int(s.server_address[1])
    return None


def families(queues: list[dict[str, Any]]) -> Iterator[Any]:
    """The metric families of ``queues`` (dicts with queue, outcomes, buckets, duration_sum, retries,
    running, depth, dlq and optionally published)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    tasks = CounterMetricFamily("boostkernel_tasks", "Finished tasks by queue and outcome", labels=["queue", "outcome"])
    duration = HistogramMetricFamily("boostkernel_task_duration_seconds", "Run duration of tasks", labels=["queue"])
    in_flight = GaugeMetricFamily("boostkernel_tasks_in_flight", "Tasks running now", labels=["queue"])
    retries = CounterMetricFamily("boostkernel_task_retries", "Runs that ended in a retry", labels=["queue"])
    depth = GaugeMetricFamily("boostkernel_queue_depth", "Messages waiting in the queue", labels=["queue"])
    dlq = GaugeMetricFamily("boostkernel_dead_letters", "Messages in the dead-letter queue", labels=["queue"])
    published = CounterMetricFamily("boostkernel_published", "Messages published (monitor=True publishers)",
                                    labels=["queue"])
    any_published = False
    for q in queues:
        name = q["queue"]
        for outcome, n in sorted(q["outcomes"].items()):
            tasks.add_metric([name, outcome], n)
        cumulative, acc = [], 0
        for bound, n in zip((*BUCKETS, float("inf")), q["buckets"], strict=True):
            acc += n
            cumulative.append(("+Inf" if bound == float("inf") else repr(float(bound)), acc))
        duration.add_metric([name], cumulative, q["duration_sum"])
        in_flight.add_metric([name], q["running"])
        retries.add_metric([name], q["retries"])
        if q.get("depth") is not None:
            depth.add_metric([name], q["depth"])
        if q.get("dlq") is not None:
            dlq.add_metric([name], q["dlq"])
        if "published" in q:
            any_published = True
            published.add_metric([name], q["published"])
    yield from (tasks, duration, in_flight, retries, depth, dlq)
    if any_published:
        yield published


class WorkerCollector:
    """This process's queues with a metrics control, read at scrape time."""

    def describe(self) -> list[Any]:
        return []  # registering must not collect (nor check names against other collectors)

    def collect(self) -> Iterator[Any]:
        with _lock:
            controls = list(_active.values())
        queues = []
        for c in controls:
            b = c.booster
            queues.append({"queue": b.queue, **c.counters.snapshot(), "running": running_of(c),
                           "depth": _safe(b.broker.count), "dlq": _safe(lambda b=b: len(b.dead_letters(10_000)))})
        yield from families(queues)


class DashboardCollector:
    """Metrics of every queue the dashboard watches, from its latest sample (see :mod:`.sampler`)."""

    def __init__(self, sampler: Any) -> None:
        self.sampler = sampler

    def collect(self) -> Iterator[Any]:
        yield from families(self.sampler.latest_queues())
