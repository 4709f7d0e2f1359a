from __future__ import annotations

import datetime as dt
import time
from typing import Any

from boostkernel.testing import ControlContract, wait_until
from boostkernel.testing.control_contract import on_brokers


def _closed_minute_expr() -> str:
    now = dt.datetime.now().astimezone()
    return f"{(now.minute + 30) % 60} * * * *"  # a minute half an hour away


class TestTimeWindow(ControlContract):
    control = "timewindow"
    on_params = {"allowed_window": "* * * * *"}
    invalid_params = [
        {"allowed_window": "not a cron"},
        {"allowed_window": "61 * * * *"},
        {"allowed_window": "* * * * * *"},  # seconds field: windows are in minutes
        {"allowed_window": "* * * * *", "window_tz": "Mars/Olympus"},
    ]

    def test_outside_the_window_nothing_runs(self, make_booster: Any) -> None:
        ran: list[int] = []
        b = make_booster(lambda i: ran.append(i), allowed_window=_closed_minute_expr())
        b.push(1)
        b.consume()
        time.sleep(1.5)
        assert ran == []
        b.stop(10)  # graceful stop returns what was fetched and held at the gate: nothing is lost
        assert wait_until(lambda: b.count() == 1, 5)

    def test_inside_the_window_tasks_run(self, make_booster: Any) -> None:
        now = dt.datetime.now().astimezone()
        minutes = f"{now.minute},{(now.minute + 1) % 60}"
        ran: list[int] = []
        b = make_booster(lambda i: ran.append(i), allowed_window=f"{minutes} * * * *")
        b.push(1)
        assert self.run_until(b, lambda: ran == [1], 10)

    @on_brokers("sqlite")
    def test_window_arithmetic(self, make_booster: Any) -> None:
        from boostkernel_timewindow.control import TimeWindow

        b = make_booster(lambda: None, allowed_window="* 9-17 * * mon-fri",
                         window_tz="Europe/Paris")
        w = TimeWindow(b)
        paris = w.tz
        assert w.is_open(dt.datetime(2026, 11, 23, 9, 0, 30, tzinfo=paris))  # a Monday
        assert w.is_open(dt.datetime(2026, 11, 23, 17, 59, tzinfo=paris))
        assert not w.is_open(dt.datetime(2026, 11, 23, 18, 0, tzinfo=paris))
        assert not w.is_open(dt.datetime(2026, 11, 22, 12, 0, tzinfo=paris))  # Sunday
        nxt = w.next_open(dt.datetime(2026, 11, 27, 18, 30, tzinfo=paris))  # Friday evening
        assert nxt == dt.datetime(2026, 11, 30, 9, 0, tzinfo=paris)

    @on_brokers("sqlite")
    def test_gate_waits_until_the_window_opens(self, make_booster: Any) -> None:
        from boostkernel_timewindow.control import TimeWindow

        b = make_booster(lambda: None, allowed_window="* * * * *")
        w = TimeWindow(b)
        opens_at = time.time() + 0.6
        w.is_open = lambda when=None: time.time() >= opens_at  # type: ignore[method-assign]
        w.next_open = lambda when=None: dt.datetime.fromtimestamp(opens_at).astimezone()  # type: ignore[method-assign]
        w.gate()
        assert wait_until(lambda: time.time() >= opens_at, 0.1)
        assert time.time() - opens_at < 0.3
