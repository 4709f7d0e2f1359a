"""The dashboard's sampler: every ``interval`` seconds, what each watched queue looks like.

For each booster: the broker's count (depth), the dead-letter queue's size (every fifth sample), the pause
flag, and the monitor records of its workers (``dash:mon:<queue>:*``, summed) plus the publish counter.
Rates are the differences between two samples; the last ``keep`` samples per queue feed the charts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

from .monitor import BUCKETS, index_key, mon_key, published_key

log = logging.getLogger("boostkernel.dashboard")
_FAILED = ("failure", "dead")


def _paused(b: Any) -> bool | None:
    try:
        from boostkernel_pause.api import pause_key
    except ImportError:  # the pause plugin is not installed
        return None
    try:
        return bool(b.store.get(pause_key(b.queue)))
    except Exception:  # noqa: BLE001
        return None


def monitor_records(b: Any) -> list[dict[str, Any]]:
    """The live monitor records of ``b``'s queue (one per worker process)."""
    index = b.store.get(index_key(b.queue)) or {}
    workers = sorted(index)
    if not workers:
        return []
    keys = [mon_key(b.queue, w) for w in workers]
    many = getattr(b.store, "get_many", None)
    values = many(keys) if many is not None else [b.store.get(k) for k in keys]
    return [r for r in values if isinstance(r, dict)]


class Sampler:
    def __init__(self, boosters: list[Any], interval: float = 1.0, keep: int = 600) -> None:
        self.boosters = {b.queue: b for b in boosters}
        self.interval = interval
        self.keep = keep
        self.lock = threading.Lock()
        self.latest: dict[str, dict[str, Any]] = {}
        self.series: dict[str, deque[dict[str, Any]]] = {q: deque(maxlen=keep) for q in self.boosters}
        self.workers: list[dict[str, Any]] = []
        self._prev: dict[str, dict[str, Any]] = {}
        self._dlq: dict[str, int | None] = {}
        self._n = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.changed = threading.Condition()
        self.version = 0

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> Sampler:
        self.sample()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="boostkernel-dashboard-sampler")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except Exception:  # noqa: BLE001 - the dashboard keeps serving
                log.exception("dashboard sample failed")

    # --- one sample -----------------------------------------------------------------------------
    def sample(self) -> None:
        now = time.time()
        workers: dict[str, dict[str, Any]] = {}
        latest: dict[str, dict[str, Any]] = {}
        with_dlq = self._n % 5 == 0
        self._n += 1
        for q, b in self.boosters.items():
            latest[q] = self._sample_queue(q, b, now, workers, with_dlq)
        with self.lock:
            self.latest = latest
            self.workers = sorted(workers.values(), key=lambda w: w["worker"])
            for q, s in latest.items():
                self.series[q].append({k: s[k] for k in ("at", "depth", "publish_rate", "success_rate",
                                                        "failure_rate", "avg_duration", "running")})
        with self.changed:
            self.version += 1
            self.changed.notify_all()

    def _sample_queue(self, q: str, b: Any, now: float, workers: dict[str, dict[str, Any]],
                      with_dlq: bool) -> dict[str, Any]:
        depth: int | None
        try:
            depth = int(b.count())
        except Exception:  # noqa: BLE001 - a broker that cannot count
            depth = None
        if with_dlq or q not in self._dlq:
            try:
                self._dlq[q] = len(b.dead_letters(10_000))
            except Exception:  # noqa: BLE001
                self._dlq[q] = None
        outcomes: dict[str, int] = {}
        buckets = [0] * (len(BUCKETS) + 1)
        retries = running = 0
        duration_sum = 0.0
        recs = monitor_records(b)
        for r in recs:
            for k, v in (r.get("outcomes") or {}).items():
                outcomes[k] = outcomes.get(k, 0) + int(v)
            for i, v in enumerate((r.get("buckets") or [])[:len(buckets)]):
                buckets[i] += int(v)
            retries += int(r.get("retries", 0))
            running += int(r.get("running", 0))
            duration_sum += float(r.get("duration_sum", 0.0))
            w = workers.setdefault(r["worker"], {
                "worker": r["worker"], "host": r.get("host"), "pid": r.get("pid"), "queues": [],
                "concurrency": r.get("concurrency"), "workers": r.get("workers"), "running": 0,
                "started_at": r.get("started_at"), "heartbeat_age": max(0.0, now - float(r.get("at", now)))})
            w["queues"].append(q)
            w["running"] += int(r.get("running", 0))
            w["heartbeat_age"] = min(w["heartbeat_age"], max(0.0, now - float(r.get("at", now))))
        try:
            published = int(b.store.get(published_key(q)) or 0)
        except Exception:  # noqa: BLE001
            published = 0
        succeeded = outcomes.get("success", 0)
        failed = sum(outcomes.get(k, 0) for k in _FAILED)
        finished = sum(outcomes.values())
        prev = self._prev.get(q)
        rates = {"publish_rate": 0.0, "success_rate": 0.0, "failure_rate": 0.0, "avg_duration": None}
        if prev is not None:
            dt = max(now - prev["at"], 1e-6)
            rates["publish_rate"] = max(0, published - prev["published"]) / dt
            rates["success_rate"] = max(0, succeeded - prev["succeeded"]) / dt
            rates["failure_rate"] = max(0, failed - prev["failed"]) / dt
            dn = finished - prev["finished"]
            if dn > 0:
                rates["avg_duration"] = max(0.0, duration_sum - prev["duration_sum"]) / dn
        self._prev[q] = {"at": now, "published": published, "succeeded": succeeded, "failed": failed,
                         "finished": finished, "duration_sum": duration_sum}
        return {"queue": q, "at": now, "depth": depth, "dlq": self._dlq.get(q), "paused": _paused(b),
                "pausable": bool(getattr(b.params, "pausable", False)), "consumers": len(recs),
                "broker": b.broker_name, "outcomes": outcomes, "buckets": buckets, "retries": retries,
                "running": running, "duration_sum": duration_sum, "published": published,
                "succeeded": succeeded, "failed": failed, **rates}

    # --- readers ----------------------------------------------------------------------------------
    def latest_queues(self) -> list[dict[str, Any]]:
        with self.lock:
            return [self.latest[q] for q in sorted(self.latest)]

    def latest_workers(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.workers)

    def series_of(self) -> dict[str, list[dict[str, Any]]]:
        with self.lock:
            return {q: list(s) for q, s in self.series.items()}

    def wait_change(self, version: int, timeout: float) -> int:
        with self.changed:
            if self.version == version:
                self.changed.wait(timeout)
            return self.version
