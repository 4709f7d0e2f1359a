"""Entry point of boostkernel-timeout (imports nothing heavy)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.control import ORDER_TIMEOUT
from boostkernel.plugins import Registry


@hookimpl
def register_controls(registry: Registry) -> None:
    registry.add_control("timeout", "boostkernel_timeout.control:TimeoutControl", params=("timeout",),
                         order=ORDER_TIMEOUT,
                         summary="Stop a task after N seconds (threads, asyncio, gevent; per process overlay)")
