"""Entry point of boostkernel-rabbitmq (imports nothing heavy: pika is imported by the broker module)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_brokers(registry: Registry) -> None:
    registry.add_broker(
        "rabbitmq", "boostkernel_rabbitmq.broker:RabbitmqBroker", schemes=("amqp", "amqps"),
        summary="RabbitMQ (pika): durable queues, publisher confirms, manual ack, priority, TTL delay, DLQ",
    )
