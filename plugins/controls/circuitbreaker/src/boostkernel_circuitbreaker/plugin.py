"""Entry point of boostkernel-circuitbreaker."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry

from .options import ORDER, CircuitBreakerOptions


@hookimpl
def register_controls(registry: Registry) -> None:
    registry.add_control("circuitbreaker", "boostkernel_circuitbreaker.control:CircuitBreaker",
                         options=CircuitBreakerOptions, order=ORDER,
                         summary="After N consecutive failures stop consuming for a cool-down, then probe")
