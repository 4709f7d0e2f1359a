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

from boostkernel.control import Control, count_per_seconds

EXPECTED = "(runs, period_seconds), e.g. (1000, 86400) for at most 1000 task starts per day"


class Quota(Control):
    name = "quota"
    needs_store = True
    count_per_seconds_options = {"quota": EXPECTED}

    def __init__(self, booster: Any) -> None:
        super().__init__(booster)
        self.runs, self.period = count_per_seconds(self.params.quota, "quota", EXPECTED)
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
