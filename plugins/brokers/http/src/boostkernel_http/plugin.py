"""Entry point of boostkernel-http. Imports nothing heavy: the broker module is loaded when used."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_brokers(registry: Registry) -> None:
    registry.add_broker("http", "boostkernel_http.broker:HttpBroker", schemes=('http',),
                        summary="HTTP, brokerless: push POSTs to the consumer's endpoint; call() returns the result in the response (at-most-once)")
