"""Entry point of boostkernel-nsq (imports nothing heavy: ansq is imported by the broker module)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_brokers(registry: Registry) -> None:
    registry.add_broker("nsq", "boostkernel_nsq.broker:NsqBroker", schemes=("nsq",),
                        summary="NSQ (ansq): FIN after the task, REQ with delay, TOUCH heartbeats, DLQ topic "
                                "(at-least-once; not tested against a server here)")
