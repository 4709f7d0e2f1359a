"""Entry point of boostkernel-stats (imports nothing heavy)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.control import ORDER_STATS
from boostkernel.plugins import Registry


@hookimpl
def register_controls(registry: Registry) -> None:
    registry.add_control("stats", "boostkernel_stats.control:StatsControl", params=("stats_interval",),
                         order=ORDER_STATS,
                         summary="Log runs, failures, average duration and time left every stats_interval seconds")
