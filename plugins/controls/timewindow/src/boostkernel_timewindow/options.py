"""Options of the timewindow control: its ``@boost`` parameters, their defaults and documentation."""

from __future__ import annotations

from dataclasses import dataclass

from boostkernel.options import option

#: Position in the control chain (lower runs first and wraps outermost); see docs/plugins.md.
ORDER = 250


@dataclass(frozen=True, kw_only=True)
class TimeWindowOptions:
    allowed_window: str | None = option(
        None, "Cron expression of the minutes in which tasks may run; outside it consumption waits")
    window_tz: str | None = option(None, "IANA timezone of allowed_window (default: the worker's local time)",
                                   switch=False)
