"""Entry point of boostkernel-stomp (imports nothing heavy: stomp.py is imported by the broker module)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_brokers(registry: Registry) -> None:
    registry.add_broker(
        "stomp", "boostkernel_stomp.broker:StompBroker", schemes=("stomp", "stomp+ssl"),
        summary="STOMP 1.2 (stomp.py; tested on ActiveMQ): client-individual ack, receipts, transactions, "
                "priority, scheduler delay, DLQ",
    )
