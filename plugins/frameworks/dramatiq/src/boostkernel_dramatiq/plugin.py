"""Entry point of boostkernel-dramatiq (imports nothing heavy: dramatiq is imported by the broker module)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_brokers(registry: Registry) -> None:
    registry.add_broker("dramatiq", "boostkernel_dramatiq.broker:DramatiqBroker",
                        summary="dramatiq as a whole framework: its own publishing, worker, retries and scheduling")
