"""Entry point of boostkernel-eventlet: registers the ``eventlet`` executor (imports nothing heavy)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_concurrency(registry: Registry) -> None:
    registry.add_executor("eventlet", "boostkernel_eventlet.executor:EventletExecutor",
                          summary="Green-thread pool (eventlet); the worker monkey-patches the process first")
