"""Entry point of boostkernel-rocketmq (imports nothing heavy: the client is imported by the broker module)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_brokers(registry: Registry) -> None:
    registry.add_broker("rocketmq", "boostkernel_rocketmq.broker:RocketmqBroker", schemes=("rocketmq", "rocketmq+tls"),
                        summary="Apache RocketMQ 5 (rocketmq-python-client, SimpleConsumer): invisible-duration "
                                "leases renewed by a heartbeat, ack after the task, DLQ (at-least-once; not "
                                "tested against a server here)")
