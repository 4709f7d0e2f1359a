"""Entry point of boostkernel-timeout (imports nothing heavy)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry

from .options import ORDER, TimeoutOptions


@hookimpl
def register_controls(registry: Registry) -> None:
    registry.add_control("timeout", "boostkernel_timeout.control:TimeoutControl", options=TimeoutOptions, order=ORDER,
                         summary="Stop a task after N seconds (threads, asyncio, gevent; per process overlay)")
