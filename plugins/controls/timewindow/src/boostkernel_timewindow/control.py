"""The time-window control: tasks start only during the minutes a cron expression matches.

``allowed_window="* 9-17 * * mon-fri"`` lets tasks start on weekdays from 09:00 to 17:59 (local time of
the worker, or the timezone in ``window_tz="Europe/Paris"``). Outside the window the
gate waits - nothing is fetched - until the next matching minute. Tasks that started inside the window
run to completion. The match is computed once per minute, so the per-message cost is one comparison.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from boostkernel.control import Control
from boostkernel.errors import ConfigError


def _croniter() -> Any:
    try:
        from croniter import croniter
    except ImportError:
        raise ConfigError('allowed_window needs croniter: pip install "boostkernel[timewindow]"') from None
    return croniter


def _tz(booster_params: Any) -> Any:
    name = booster_params.window_tz
    if name is None:
        return None
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


class TimeWindow(Control):
    name = "timewindow"

    @classmethod
    def check(cls, booster: Any) -> None:
        super().check(booster)
        expr = booster.params.allowed_window
        croniter = _croniter()
        if not isinstance(expr, str) or len(expr.split()) != 5 or not croniter.is_valid(expr):
            raise ConfigError(
                f"allowed_window={expr!r}: expected a 5-field cron expression of the allowed minutes, e.g. "
                "'* 9-17 * * mon-fri' (every minute from 09:00 to 17:59 on weekdays)")
        try:
            _tz(booster.params)
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(f"window_tz: unknown timezone ({exc})") from None

    def __init__(self, booster: Any) -> None:
        super().__init__(booster)
        self.expr = self.booster.params.allowed_window
        self.croniter = _croniter()
        self.tz = _tz(self.params)
        self._minute = -1
        self._open = False

    def _now(self) -> dt.datetime:
        return dt.datetime.now(self.tz) if self.tz is not None else dt.datetime.now().astimezone()

    def is_open(self, when: dt.datetime | None = None) -> bool:
        when = when or self._now()
        return bool(self.croniter.match(self.expr, when.replace(second=0, microsecond=0)))

    def next_open(self, when: dt.datetime | None = None) -> dt.datetime:
        """The start of the next allowed minute after ``when``."""
        when = when or self._now()
        nxt: dt.datetime = self.croniter(self.expr, when).get_next(dt.datetime)
        return nxt

    def gate(self) -> None:
        minute = int(time.time() // 60)
        if minute == self._minute and self._open:
            return
        while True:
            now = self._now()
            self._minute = int(time.time() // 60)
            self._open = self.is_open(now)
            if self._open:
                return
            wait = (self.next_open(now) - now).total_seconds()
            if self.consumer is not None:
                self.consumer.log.info("outside allowed_window %r: waiting %.0fs", self.expr, wait)
            # Wake at least every 60 s (clock changes, DST) and at the next allowed minute.
            if self.sleep(min(max(wait, 0.05), 60.0)):
                return
