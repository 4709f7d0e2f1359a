from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_concurrency(registry: Registry) -> None:
    registry.add_executor("asyncio", "boostkernel_asyncio.executor:AsyncioExecutor",
                          summary="async def tasks on one event loop thread; sync functions off-loop")
