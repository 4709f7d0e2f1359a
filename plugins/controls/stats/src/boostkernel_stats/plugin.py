"""Entry point of boostkernel-stats (imports nothing heavy)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry

from .options import ORDER, StatsOptions


@hookimpl
def register_controls(registry: Registry) -> None:
    registry.add_control("stats", "boostkernel_stats.control:StatsControl", options=StatsOptions, order=ORDER,
                         summary="Log runs, failures, average duration and time left every stats_interval seconds")
