"""Entry point of boostkernel-retry (imports nothing heavy)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.control import ORDER_RETRY
from boostkernel.plugins import Registry


@hookimpl
def register_controls(registry: Registry) -> None:
    registry.add_control(
        "retry", "boostkernel_retry.control:RetryControl",
        params=("max_retries", "retry_backoff", "retry_backoff_max", "retry_jitter", "retry_on", "retry_mode"),
        order=ORDER_RETRY,
        summary="Retries: immediate or exponential backoff with jitter, in the worker or by republishing")
