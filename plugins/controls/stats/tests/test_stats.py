"""The stats control: runs, failures, average duration and time left, logged every interval."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from boostkernel_stats import published, snapshot

from boostkernel import Booster
from boostkernel.testing.control_contract import ControlContract
from boostkernel.testing.helpers import wait_until


class TestStats(ControlContract):
    control = "stats"
    on_params = {"stats_interval": 0.5}
    invalid_params = [{"stats_interval": 0}, {"stats_interval": -1}]

    def test_counts_failures_duration_and_time_left(self, make_booster: Callable[..., Booster[Any, Any]],
                                                    caplog: pytest.LogCaptureFixture) -> None:
        def task(i: int) -> None:
            time.sleep(0.02)
            if i % 4 == 0:
                raise ValueError("every fourth fails")

        b = make_booster(task, stats_interval=0.5, concurrency="solo")
        b.push_many([(i,) for i in range(40)])
        caplog.set_level(logging.INFO, logger="boostkernel")
        b.consume()
        assert wait_until(lambda: (snapshot(b) or {}).get("total_runs", 0) >= 40, 20)
        snap = snapshot(b)
        assert snap is not None
        assert snap["total_runs"] == 40
        assert snap["total_failures"] == 10
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"stats q={b.queue}")]
        assert lines, "no stats line was logged"
        # an interval in which tasks ran reports a rate, an average near 20 ms and a time-left estimate
        busy = [line for line in lines if " 0 runs" not in line]
        assert busy
        assert "avg " in busy[0] and " ms" in busy[0]
        assert any("time left ~" in line or "0 waiting" in line for line in busy)
        shared = published(b)
        assert shared is not None and shared["queue"] == b.queue and shared["total_runs"] >= 1

    def test_stop_reports_the_last_interval(self, make_booster: Callable[..., Booster[Any, Any]]) -> None:
        b = make_booster(lambda: time.sleep(0.05), stats_interval=0.3, concurrency="solo")
        b.push_many([() for _ in range(6)])
        b.consume()
        assert wait_until(lambda: (snapshot(b) or {}).get("total_runs", 0) >= 6, 15)
        time.sleep(0.4)
        b.stop()
        snap = snapshot(b)
        assert snap is not None and snap["total_runs"] == 6 and snap["total_failures"] == 0

    def test_time_left_estimate(self, make_booster: Callable[..., Booster[Any, Any]]) -> None:
        b = make_booster(lambda: time.sleep(0.05), stats_interval=0.5, concurrency="solo")
        b.push_many([() for _ in range(60)])  # ~3 s of work at 20/s
        b.consume()
        assert wait_until(lambda: (snapshot(b) or {}).get("runs", 0) > 0, 10)
        snap = snapshot(b)
        assert snap is not None
        assert snap["waiting"] is not None and snap["waiting"] > 0
        assert 10 < snap["rate"] < 25  # one 50 ms task at a time
        assert snap["avg_duration"] == pytest.approx(0.05, abs=0.03)
        assert snap["time_left"] == pytest.approx(snap["waiting"] / snap["rate"])
