"""The websocket broker: the broker contract for what it declares (at-most-once), and the listener checks."""

from __future__ import annotations

from boostkernel_websocket.broker import WebSocketBroker

from boostkernel.testing.listener import ListenerBrokerContract, ListenerContract


class TestWebSocketContract(ListenerBrokerContract):
    broker_class = WebSocketBroker


class TestWebSocketListener(ListenerContract):
    broker_class = WebSocketBroker
