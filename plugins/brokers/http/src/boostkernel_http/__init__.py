"""boostkernel-http: a brokerless HTTP broker; :func:`call` returns a task's result in the HTTP answer (RPC)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from boostkernel import Booster

__all__ = ["call"]


def call(booster: Booster[Any, Any], *args: Any, timeout: float = 30.0, **kwargs: Any) -> Any:
    """Run ``booster(*args, **kwargs)`` on the consumer and return its result: one POST whose answer waits
    for the task (the consumer's booster needs ``results=True``). Raises ``TaskFailed`` if it failed and
    ``ResultTimeout`` after ``timeout`` seconds."""
    from boostkernel.edge import sync_call

    return sync_call(booster, args, kwargs, timeout)
