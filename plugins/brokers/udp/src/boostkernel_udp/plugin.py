"""Entry point of boostkernel-udp. Imports nothing heavy: the broker module is loaded when used."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_brokers(registry: Registry) -> None:
    registry.add_broker("udp", "boostkernel_udp.broker:UdpBroker", schemes=('udp',),
                        summary="UDP datagrams straight to the consumer (at-most-once; datagrams can be lost; 65,000-byte limit)")
