"""The websocket broker: the broker contract for what it declares (at-most-once), and the listener checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from boostkernel_websocket.broker import WebSocketBroker

from boostkernel.broker import Broker
from boostkernel.testing import BrokerContract
from boostkernel.testing.listener import ListenerContract


class TestWebSocketContract(BrokerContract):
    settle_time = 3.0

    @pytest.fixture
    def make_broker(self) -> Iterator[Callable[[str], Broker]]:
        made: list[Broker] = []

        def make(queue: str) -> Broker:
            b = WebSocketBroker(queue, "ws://127.0.0.1:0")
            b.listen()  # the consumer's listener, on a free port; publish on this instance sends to it
            made.append(b)
            return b

        yield make
        for b in made:
            b.close()


class TestWebSocketListener(ListenerContract):
    broker_class = WebSocketBroker
    scheme = "ws"
