"""The stats control: every ``stats_interval`` seconds, log what the queue's consumer did.

Per message it only adds to three numbers under a lock (``after()``). A reporter thread, started with the
consumer, turns them into one log line per interval on the queue's logger::

    stats q=orders: 120 runs (3 failed) in the last 10.0s = 12.0/s, avg 41.7 ms; since start 5020 runs
    (17 failed); 843 waiting, time left ~0:01:10

and writes the same figures to the store under ``stats:<queue>:<worker id>`` (TTL 3 intervals) for
dashboards. "Time left" is the queue's count divided by this worker's rate in the last interval; with
several workers on one queue each sees its own share, so the true time left is shorter.
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
import time
from typing import Any

from boostkernel.control import Control, Repeating, TaskContext
from boostkernel.logs import queue_logger

#: queue -> the last snapshot computed in this process
LATEST: dict[str, dict[str, Any]] = {}
_FAILED = frozenset(("failure", "dead"))


class StatsControl(Control):
    name = "stats"
    positive_seconds = {"stats_interval": ""}

    def __init__(self, booster: Any) -> None:
        super().__init__(booster)
        self.interval = float(self.booster.params.stats_interval or 10.0)
        self.log = queue_logger(booster.queue)
        self._lock = threading.Lock()
        self._runs = self._failures = 0
        self._duration = 0.0
        self.total_runs = self.total_failures = 0
        self._reporter = Repeating(self.report, self.interval, f"boostkernel-stats-{booster.queue}",
                                   on_error=lambda: self.log.exception("stats report failed"))
        self._since = time.monotonic()

    # --- per message --------------------------------------------------------------------------
    def after(self, ctx: TaskContext) -> None:
        status = ctx.status
        if status in ("requeued", "retry"):
            return  # not an execution that finished
        d = (ctx.finished_at or time.time()) - ctx.started_at
        with self._lock:
            self._runs += 1
            self._duration += d
            if status in _FAILED:
                self._failures += 1

    # --- reporting ----------------------------------------------------------------------------
    def start(self) -> None:
        self._since = time.monotonic()
        self._reporter.start()

    def stop(self) -> None:
        self._reporter.stop()
        self.report()  # the last partial interval

    def report(self) -> dict[str, Any]:
        """Compute, log and publish the figures of the interval that just ended; reset the interval."""
        now = time.monotonic()
        with self._lock:
            runs, failures, duration = self._runs, self._failures, self._duration
            self._runs = self._failures = 0
            self._duration = 0.0
            self.total_runs += runs
            self.total_failures += failures
        elapsed = max(now - self._since, 1e-9)
        self._since = now
        rate = runs / elapsed
        waiting: int | None
        try:
            waiting = int(self.booster.broker.count())
        except Exception:  # noqa: BLE001 - brokers that cannot count
            waiting = None
        eta_s = waiting / rate if (waiting is not None and rate > 0) else None
        snap: dict[str, Any] = {
            "queue": self.booster.queue, "at": time.time(), "interval": elapsed, "runs": runs,
            "failures": failures, "rate": rate, "avg_duration": duration / runs if runs else None,
            "total_runs": self.total_runs, "total_failures": self.total_failures, "waiting": waiting,
            "time_left": eta_s,
        }
        LATEST[self.booster.queue] = snap
        if self.log.isEnabledFor(logging.INFO):
            avg = f"avg {snap['avg_duration'] * 1000:.1f} ms" if runs else "avg -"
            if waiting is None:
                left = "queue size unknown"
            elif waiting == 0:
                left = "0 waiting"
            elif eta_s is None:
                left = f"{waiting} waiting, time left unknown (no runs in this interval)"
            else:
                left = f"{waiting} waiting, time left ~{_dt.timedelta(seconds=round(eta_s))}"
            self.log.info("stats q=%s: %d runs (%d failed) in the last %.1fs = %.1f/s, %s; since start %d runs "
                          "(%d failed); %s", self.booster.queue, runs, failures, elapsed, rate, avg,
                          self.total_runs, self.total_failures, left)
        try:
            from boostkernel.context import worker_id

            self.booster.store.set(f"stats:{self.booster.queue}:{worker_id()}", snap, ttl=3 * self.interval)
        except Exception:  # noqa: BLE001 - the store is optional for statistics
            self.log.debug("could not publish stats to the store", exc_info=True)
        return snap
