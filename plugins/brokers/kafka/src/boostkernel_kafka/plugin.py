"""Entry point of boostkernel-kafka (imports nothing heavy: kafka-python is imported by the broker module)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_brokers(registry: Registry) -> None:
    registry.add_broker("kafka", "boostkernel_kafka.broker:KafkaBroker", schemes=("kafka",),
                        summary="Kafka via kafka-python: consumer groups, at-least-once, contiguous-offset commits")
