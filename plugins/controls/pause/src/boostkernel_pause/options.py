"""Options of the pause control: its ``@boost`` parameters, their defaults and documentation."""

from __future__ import annotations

from dataclasses import dataclass

from boostkernel.options import option

#: Position in the control chain (lower runs first and wraps outermost); see docs/plugins.md.
ORDER = 240


@dataclass(frozen=True, kw_only=True)
class PauseOptions:
    pausable: bool = option(False, "Poll the store for a pause flag so pause()/resume() from anywhere take effect")
    pause_poll_interval: float = option(0.5, "Seconds between two reads of the pause flag", switch=False)
