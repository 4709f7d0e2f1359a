"""Entry point of boostkernel-timewindow (does not import croniter)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.control import ORDER_WINDOW
from boostkernel.plugins import Registry


@hookimpl
def register_controls(registry: Registry) -> None:
    registry.add_control("timewindow", "boostkernel_timewindow.control:TimeWindow", params=("allowed_window",),
                         order=ORDER_WINDOW,
                         summary="Run tasks only in the minutes a cron expression allows (croniter)")
