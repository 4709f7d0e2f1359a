from __future__ import annotations

import math
import threading
import time
from typing import Any

from boostkernel.consumer import Consumer
from boostkernel.testing import ControlContract, wait_until


class TestQuota(ControlContract):
    control = "quota"
    on_params = {"quota": (1000, 60.0)}
    invalid_params = [{"quota": (0, 10.0)}, {"quota": (5, 0)}, {"quota": (5,)}, {"quota": (1.5, 10.0)}]

    def test_at_most_n_starts_per_period_across_consumers(self, make_booster: Any) -> None:
        period = 1.0
        starts: list[float] = []
        lock = threading.Lock()

        def task(i: int) -> None:
            with lock:
                starts.append(time.time())

        b = make_booster(task, quota=(4, period))
        # Start on a period boundary so the first period is whole.
        time.sleep(math.ceil(time.time()) - time.time() + 0.05)
        b.push_many([(i,) for i in range(12)])
        consumers = [Consumer(b), Consumer(b)]  # two independent consumers sharing the store's count
        for c in consumers:
            c.start()
        try:
            assert wait_until(lambda: len(starts) == 12, 10)
        finally:
            for c in consumers:
                c.stop(10)
        per_period: dict[int, int] = {}
        for t in starts:
            per_period[int(t // period)] = per_period.get(int(t // period), 0) + 1
        assert max(per_period.values()) == 4, per_period
        assert len(per_period) == 3, per_period
