"""Entry point of boostkernel-huey (imports nothing heavy: huey is imported by the broker module)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_brokers(registry: Registry) -> None:
    registry.add_broker("huey", "boostkernel_huey.broker:HueyBroker",
                        summary="huey as a whole framework: its own publishing, consumer, retries and scheduling")
