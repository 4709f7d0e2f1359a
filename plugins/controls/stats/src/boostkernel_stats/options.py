"""Options of the stats control: its ``@boost`` parameters, their defaults and documentation."""

from __future__ import annotations

from dataclasses import dataclass

from boostkernel.options import option

#: Position in the control chain (lower runs first and wraps outermost); see docs/plugins.md.
ORDER = 950


@dataclass(frozen=True, kw_only=True)
class StatsOptions:
    stats_interval: float | None = option(
        None, "Log execution statistics and time-left estimates every this many seconds")
