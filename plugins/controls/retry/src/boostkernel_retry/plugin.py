"""Entry point of boostkernel-retry (imports nothing heavy)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry

from .options import ORDER, RetryOptions


@hookimpl
def register_controls(registry: Registry) -> None:
    registry.add_control(
        "retry", "boostkernel_retry.control:RetryControl",
        options=RetryOptions, order=ORDER,
        summary="Retries: immediate or exponential backoff with jitter, in the worker or by republishing")
