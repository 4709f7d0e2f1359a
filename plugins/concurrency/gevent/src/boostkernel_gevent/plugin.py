"""Entry point of boostkernel-gevent: registers the ``gevent`` executor (imports nothing heavy)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_concurrency(registry: Registry) -> None:
    registry.add_executor("gevent", "boostkernel_gevent.executor:GeventExecutor",
                          summary="Greenlet pool (gevent); the worker monkey-patches the process first")
