"""Entry point of boostkernel-tcp. Imports nothing heavy: the broker module is loaded when used."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_brokers(registry: Registry) -> None:
    registry.add_broker("tcp", "boostkernel_tcp.broker:TcpBroker", schemes=('tcp',),
                        summary="TCP, brokerless: producers connect straight to the consumer's listener (at-most-once)")
