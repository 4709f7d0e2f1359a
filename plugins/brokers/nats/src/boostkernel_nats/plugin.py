"""Entry point of boostkernel-nats (imports nothing heavy: nats-py is imported by the broker module)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_brokers(registry: Registry) -> None:
    registry.add_broker(
        "nats", "boostkernel_nats.broker:NatsBroker", schemes=("nats",),
        summary="NATS JetStream (nats-py): durable pull consumer, ack / nak with delay, in-progress heartbeats, DLQ stream",
    )
