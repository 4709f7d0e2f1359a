"""Entry point of boostkernel-websocket. Imports nothing heavy: the broker module is loaded when used."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_brokers(registry: Registry) -> None:
    registry.add_broker("websocket", "boostkernel_websocket.broker:WebSocketBroker", schemes=('ws',),
                        summary="WebSocket, brokerless: producers stream messages to the consumer's endpoint (at-most-once)")
