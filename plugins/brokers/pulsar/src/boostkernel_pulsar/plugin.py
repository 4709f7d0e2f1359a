"""Entry point of boostkernel-pulsar (imports nothing heavy: pulsar-client is imported by the broker module)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_brokers(registry: Registry) -> None:
    registry.add_broker("pulsar", "boostkernel_pulsar.broker:PulsarBroker", schemes=("pulsar", "pulsar+ssl"),
                        summary="Apache Pulsar (pulsar-client): Shared subscription, ack / negative ack, "
                                "delayed delivery, dead-letter policy (at-least-once; not tested against a "
                                "server here)")
