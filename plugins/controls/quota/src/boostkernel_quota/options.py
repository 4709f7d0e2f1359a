"""Options of the quota control: its ``@boost`` parameters, their defaults and documentation."""

from __future__ import annotations

from dataclasses import dataclass

from boostkernel.options import option

#: Position in the control chain (lower runs first and wraps outermost); see docs/plugins.md.
ORDER = 270


@dataclass(frozen=True, kw_only=True)
class QuotaOptions:
    quota: tuple[int, float] | None = option(None, "(runs, period_seconds): at most that many task starts per period")
