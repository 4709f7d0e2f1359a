"""Options of the expiry control: its ``@boost`` parameters, their defaults and documentation."""

from __future__ import annotations

from dataclasses import dataclass

from boostkernel.options import option

#: Position in the control chain (lower runs first and wraps outermost); see docs/plugins.md.
ORDER = 100


@dataclass(frozen=True, kw_only=True)
class ExpiryOptions:
    expires: float | None = option(None, "Drop messages older than this many seconds instead of running them",
                                   per_message=True)
