from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_concurrency(registry: Registry) -> None:
    registry.add_executor("solo", "boostkernel_solo.executor:SoloExecutor",
                          summary="One task at a time in the consumer thread (lowest overhead, ordered)")
