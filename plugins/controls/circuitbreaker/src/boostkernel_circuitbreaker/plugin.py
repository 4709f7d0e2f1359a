"""Entry point of boostkernel-circuitbreaker."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.control import ORDER_CIRCUIT
from boostkernel.plugins import Registry


@hookimpl
def register_controls(registry: Registry) -> None:
    registry.add_control("circuitbreaker", "boostkernel_circuitbreaker.control:CircuitBreaker",
                         params=("circuit_breaker",), order=ORDER_CIRCUIT,
                         summary="After N consecutive failures stop consuming for a cool-down, then probe")
