"""Entry point of boostkernel-confluent-kafka (imports nothing heavy: confluent-kafka is imported by the broker)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_brokers(registry: Registry) -> None:
    registry.add_broker("confluent-kafka", "boostkernel_confluent_kafka.broker:ConfluentKafkaBroker",
                        summary="Kafka via confluent-kafka (librdkafka): consumer groups, at-least-once, "
                                "contiguous-offset commits")
