"""Entry point of boostkernel-timewindow (does not import croniter)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry

from .options import ORDER, TimeWindowOptions


@hookimpl
def register_controls(registry: Registry) -> None:
    registry.add_control("timewindow", "boostkernel_timewindow.control:TimeWindow", options=TimeWindowOptions, order=ORDER,
                         summary="Run tasks only in the minutes a cron expression allows (croniter)")
