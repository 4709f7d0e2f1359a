"""Entry point of boostkernel-grpc. Imports nothing heavy: the broker module is loaded when used."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_brokers(registry: Registry) -> None:
    registry.add_broker("grpc", "boostkernel_grpc.broker:GrpcBroker", schemes=('grpc',),
                        summary="gRPC, brokerless: unary push, streaming publish, call() returns the result (at-most-once)")
