"""Options of the circuitbreaker control: its ``@boost`` parameters, their defaults and documentation."""

from __future__ import annotations

from dataclasses import dataclass

from boostkernel.options import option

#: Position in the control chain (lower runs first and wraps outermost); see docs/plugins.md.
ORDER = 280


@dataclass(frozen=True, kw_only=True)
class CircuitBreakerOptions:
    circuit_breaker: tuple[int, float] | None = option(
        None, "(failures, cool_down_seconds): after that many consecutive failures, pause consuming")
