"""Options of the cancel control: its ``@boost`` parameters, their defaults and documentation."""

from __future__ import annotations

from dataclasses import dataclass

from boostkernel.options import option

#: Position in the control chain (lower runs first and wraps outermost); see docs/plugins.md.
ORDER = 450


@dataclass(frozen=True, kw_only=True)
class CancelOptions:
    cancellable: bool = option(False, "Check revocations so AsyncResult.revoke() works for pending and running tasks")
    cancel_poll_interval: float = option(0.25, "Seconds between two checks of the queue's revocations",
                                         switch=False)
