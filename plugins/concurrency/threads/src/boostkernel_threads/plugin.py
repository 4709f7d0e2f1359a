from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_concurrency(registry: Registry) -> None:
    registry.add_executor("threads", "boostkernel_threads.executor:ThreadsExecutor",
                          summary="Bounded thread pool that grows on demand and shrinks when idle (default)")
