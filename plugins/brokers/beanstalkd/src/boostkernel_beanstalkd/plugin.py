"""Entry point of boostkernel-beanstalkd (imports nothing heavy: greenstalk is imported by the broker module)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_brokers(registry: Registry) -> None:
    registry.add_broker(
        "beanstalkd", "boostkernel_beanstalkd.broker:BeanstalkdBroker", schemes=("beanstalk", "beanstalkd"),
        summary="beanstalkd (greenstalk): reserve / delete / release, priority, native delay, touch heartbeats, bury as DLQ",
    )
