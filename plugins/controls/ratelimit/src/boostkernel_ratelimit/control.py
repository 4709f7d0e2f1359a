"""The rate limit control: ``qps`` task starts per second, exact whatever the function's duration.

Starts are scheduled at fixed instants ``interval = 1/qps`` apart, computed from the previous *scheduled*
instant (never from the moment the gate woke up), so sleeping jitter never accumulates into drift. When
the queue was idle the schedule restarts from "now": an idle spell never turns into a catch-up burst.

``qps_scope="global"`` shares one schedule among every process and machine consuming the queue. Time is
cut into slots ``k = ceil(t * qps)``; slot ``k`` starts at ``k / qps``. A worker claims a slot with one
atomic "set if absent" on the booster's store (SQLite on one host, Redis across machines); exactly one
worker wins each slot, so the global rate is exact - it is not the budget split per process. A worker
that loses a slot tries the next one (starting after the highest slot it saw taken), so contention costs
one extra store round trip per competing worker, not a retry loop. Worker clocks are assumed to be in
sync (NTP); a skewed clock shifts that worker's view of "now", not the spacing between slots.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from typing import Any

from boostkernel.control import Control
from boostkernel.errors import ConfigError


class RateLimit(Control):
    name = "ratelimit"

    @classmethod
    def check(cls, booster: Any) -> None:
        super().check(booster)
        p = booster.params
        if p.qps is None:
            raise ConfigError(f"qps_scope={p.qps_scope!r} for queue {p.queue!r} has no effect without qps; "
                              "set qps=N (task starts per second), e.g. @boost(..., qps=5, qps_scope='global')")
        if p.qps_scope == "global":
            store_cls = _store_class(booster)
            caps = getattr(store_cls, "capabilities", None)
            if caps is not None and not caps.cross_process:
                raise ConfigError(
                    f"qps_scope='global' for queue {p.queue!r} needs a store shared by processes, but store "
                    f"{store_cls.name!r} lives in one process; use the sqlite store (one host) or redis "
                    "(several machines): @boost(..., store='redis') or broker='redis'")

    def __init__(self, booster: Any) -> None:
        super().__init__(booster)
        qps_param = self.booster.params.qps
        assert qps_param is not None  # the kernel switches a control on only when its parameter is set
        qps = float(qps_param)
        self.qps = qps
        self.interval = 1.0 / qps
        self._next = 0.0
        self.global_scope = self.booster.params.qps_scope == "global"
        if self.global_scope:
            self.prefix = f"bk:qps:{booster.queue}:"
            self.owner = f"{os.getpid()}:{uuid.uuid4().hex[:8]}"
            self._last_taken = -1
            self._cleanup_at = 0.0
            self.gate = self._global_gate  # type: ignore[method-assign]

    def gate(self) -> None:
        now = time.time()
        t = self._next if self._next > now else now
        if t > now:
            self.sleep_until(t)
        self._next = t + self.interval

    def sleep_until(self, t: float) -> None:
        # Sleep most of the way, then finish with short sleeps: time.sleep overshoots by up to a millisecond.
        while True:
            left = t - time.time()
            if left <= 0:
                return
            if self.sleep(left - 0.002 if left > 0.01 else left / 2):
                return  # the consumer is stopping

    def _global_gate(self) -> None:
        qps, store, prefix = self.qps, self.booster.store, self.prefix
        k = max(math.ceil(time.time() * qps), self._last_taken + 1)
        while True:
            slot_at = k / qps
            # The key lives until shortly after its slot: slots in the past are never claimed again.
            ttl = max(slot_at - time.time(), 0.0) + 5.0 + self.interval
            if store.set(prefix + str(k), self.owner, ttl=ttl, only_if_absent=True):
                break
            self._last_taken = k
            k = max(k + 1, math.ceil(time.time() * qps))
        self._last_taken = k
        self.sleep_until(slot_at)
        now = time.time()
        if now > self._cleanup_at:  # the SQLite store keeps expired rows until asked to drop them
            self._cleanup_at = now + 30.0
            expire = getattr(store, "expire", None)
            if expire is not None:
                try:
                    expire()
                except Exception:  # noqa: BLE001 - housekeeping only
                    pass


def _store_class(booster: Any) -> Any:
    from boostkernel.plugins import get_plugins

    name = booster.params.store or booster.broker_class.default_store
    if "://" in name:
        return None
    try:
        return get_plugins().get("store", name).load()
    except Exception:  # noqa: BLE001 - a missing store is reported when it is opened
        return None
