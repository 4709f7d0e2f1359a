"""The periodic quota: ``quota=(runs, period_s)`` - at most ``runs`` task starts per period.

Periods are fixed windows aligned on multiples of ``period_s`` since the Unix epoch (``86400`` = calendar
days in UTC, ``3600`` = clock hours), like the quotas of paid APIs. The count lives in the booster's
store (one atomic ``incr`` per task start), so the quota holds across every process and machine that
shares the store. When the period's quota is spent the gate waits for the next period; nothing is
fetched meanwhile.
"""

from __future__ import annotations

import time
from typing import Any

from boostkernel.control import Control
from boostkernel.errors import ConfigError

from .options import ORDER


class Quota(Control):
    name = "quota"
    order = ORDER
    needs_store = True

    @classmethod
    def check(cls, booster: Any) -> None:
        super().check(booster)
        q = booster.params.quota
        ok = isinstance(q, (tuple, list)) and len(q) == 2
        if ok:
            runs, period = q
            ok = isinstance(runs, int) and not isinstance(runs, bool) and runs >= 1 \
                and isinstance(period, (int, float)) and period > 0
        if not ok:
            raise ConfigError(f"quota={q!r}: expected (runs, period_seconds), e.g. (1000, 86400) for at most "
                              "1000 task starts per day")

    def __init__(self, booster: Any) -> None:
        super().__init__(booster)
        quota = self.booster.params.quota
        assert quota is not None  # the kernel switches a control on only when its parameter is set
        runs, period = quota
        self.runs, self.period = int(runs), float(period)
        self.prefix = f"bk:quota:{booster.queue}:"
        self._exhausted_until = 0.0

    def gate(self) -> None:
        store = self.booster.store
        while True:
            now = time.time()
            if now < self._exhausted_until:
                if self.sleep(self._exhausted_until - now):
                    return
                continue
            window = int(now // self.period)
            end = (window + 1) * self.period
            n = store.incr(self.prefix + str(window), 1, ttl=end - now + 60.0)
            if n <= self.runs:
                return
            self._exhausted_until = end
            if self.consumer is not None:
                self.consumer.log.info("quota of %d runs per %ss spent: waiting %.1fs for the next period",
                                       self.runs, self.period, end - now)
