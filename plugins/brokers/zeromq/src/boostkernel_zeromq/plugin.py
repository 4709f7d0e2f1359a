"""Entry point of boostkernel-zeromq. Imports nothing heavy: the broker module is loaded when used."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_brokers(registry: Registry) -> None:
    registry.add_broker("zeromq", "boostkernel_zeromq.broker:ZeroMQBroker", schemes=('zmq', 'zeromq'),
                        summary="ZeroMQ PUSH/PULL, brokerless: producers push to the consumers' PULL sockets (at-most-once)")
