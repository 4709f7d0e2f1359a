"""Prometheus metrics: each worker's own (``metrics_port=...``) and the dashboard's ``/metrics``.

Metric names (the same on a worker and on the dashboard, which sums the monitor records of every worker):

* ``boostkernel_tasks_total{queue, outcome}`` - finished tasks by outcome (success, failure, dead, …)
* ``boostkernel_task_duration_seconds{queue}`` - histogram of run durations
* ``boostkernel_tasks_in_flight{queue}`` - tasks running now
* ``boostkernel_task_retries_total{queue}`` - runs that ended in a retry
* ``boostkernel_queue_depth{queue}`` - messages waiting (broker count)
* ``boostkernel_dead_letters{queue}`` - messages in the dead-letter queue (capped at 10,000 when sampled)

A worker's metrics cost nothing when ``metrics_port`` is unset: the control is then not instantiated.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from boostkernel.control import Control, TaskContext
from boostkernel.errors import ConfigError

from .monitor import BUCKETS
from .options import ORDER_METRICS

_lock = threading.Lock()
_metrics: dict[str, Any] = {}
_servers: dict[tuple[str, int], Any] = {}


def _worker_metrics() -> dict[str, Any]:
    """This process's metric families (created once, in prometheus-client's default registry)."""
    with _lock:
        if not _metrics:
            from prometheus_client import Counter, Gauge, Histogram

            _metrics["tasks"] = Counter("boostkernel_tasks", "Finished tasks by queue and outcome",
                                        ["queue", "outcome"])
            _metrics["duration"] = Histogram("boostkernel_task_duration_seconds", "Run duration of tasks",
                                             ["queue"], buckets=BUCKETS)
            _metrics["in_flight"] = Gauge("boostkernel_tasks_in_flight", "Tasks running now", ["queue"])
            _metrics["retries"] = Counter("boostkernel_task_retries", "Runs that ended in a retry", ["queue"])
            _metrics["depth"] = Gauge("boostkernel_queue_depth", "Messages waiting in the queue", ["queue"])
            _metrics["dlq"] = Gauge("boostkernel_dead_letters", "Messages in the dead-letter queue", ["queue"])
        return _metrics


class MetricsControl(Control):
    """Serves this worker process's Prometheus metrics on ``metrics_port``."""

    name = "metrics"
    order = ORDER_METRICS

    def __init__(self, booster: Any) -> None:
        super().__init__(booster)
        m = _worker_metrics()
        q = booster.queue
        self._tasks = m["tasks"]
        self._outcome: dict[str, Any] = {}
        self._duration = m["duration"].labels(q)
        self._in_flight = m["in_flight"].labels(q)
        self._retries = m["retries"].labels(q)
        self.port: int | None = None

    @classmethod
    def check(cls, booster: Any) -> None:
        super().check(booster)
        v = booster.params.metrics_port
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 65535:
            raise ConfigError(f"metrics_port={v!r} on queue {booster.params.queue!r}: must be a TCP port "
                              "(0-65535; 0 picks a free one)")

    def before(self, ctx: TaskContext) -> None:
        self._in_flight.inc()

    def after(self, ctx: TaskContext) -> None:
        self._in_flight.dec()
        status = str(ctx.status)
        if status == "retry":
            self._retries.inc()
            return
        if status == "requeued":
            return
        c = self._outcome.get(status)
        if c is None:
            c = self._outcome[status] = self._tasks.labels(self.booster.queue, status)
        c.inc()
        self._duration.observe((ctx.finished_at or time.time()) - ctx.started_at)

    def start(self) -> None:
        m = _worker_metrics()
        b = self.booster
        m["depth"].labels(b.queue).set_function(lambda: _safe(b.broker.count))
        m["dlq"].labels(b.queue).set_function(lambda: _safe(lambda: len(b.dead_letters(10_000))))
        host = str(self.params.metrics_host)
        port = int(self.params.metrics_port)
        with _lock:
            key = (host, port)
            server = _servers.get(key)
            if server is None:
                from prometheus_client import start_http_server

                started = start_http_server(port, addr=host)
                server = _servers[key] = started[0] if isinstance(started, tuple) else started
        self.port = int(server.server_address[1]) if server is not None else port


def _safe(fn: Any) -> float:
    try:
        return float(fn())
    except Exception:  # noqa: BLE001 - a broker that cannot count reports NaN
        return float("nan")


def server_port(host: str, port: int) -> int | None:
    """The port a worker's metrics server listens on (useful with ``metrics_port=0``)."""
    with _lock:
        for (h, p), s in _servers.items():
            if h == host and (p == port or port == 0):
                return int(s.server_address[1])
    return None


class DashboardCollector:
    """Metrics of every queue the dashboard watches, from its latest sample (see :mod:`.sampler`)."""

    def __init__(self, sampler: Any) -> None:
        self.sampler = sampler

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        tasks = CounterMetricFamily("boostkernel_tasks", "Finished tasks by queue and outcome",
                                    labels=["queue", "outcome"])
        duration = HistogramMetricFamily("boostkernel_task_duration_seconds", "Run duration of tasks",
                                         labels=["queue"])
        in_flight = GaugeMetricFamily("boostkernel_tasks_in_flight", "Tasks running now", labels=["queue"])
        retries = CounterMetricFamily("boostkernel_task_retries", "Runs that ended in a retry", labels=["queue"])
        depth = GaugeMetricFamily("boostkernel_queue_depth", "Messages waiting in the queue", labels=["queue"])
        dlq = GaugeMetricFamily("boostkernel_dead_letters", "Messages in the dead-letter queue", labels=["queue"])
        published = CounterMetricFamily("boostkernel_published", "Messages published (monitor=True publishers)",
                                        labels=["queue"])
        for q in self.sampler.latest_queues():
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
            if q["depth"] is not None:
                depth.add_metric([name], q["depth"])
            if q["dlq"] is not None:
                dlq.add_metric([name], q["dlq"])
            published.add_metric([name], q["published"])
        yield from (tasks, duration, in_flight, retries, depth, dlq, published)
