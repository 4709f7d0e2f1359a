"""The tcp broker: the broker contract for what it declares (at-most-once), and the listener checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from boostkernel_tcp.broker import TcpBroker

from boostkernel.broker import Broker
from boostkernel.testing import BrokerContract
from boostkernel.testing.listener import ListenerContract


class TestTcpContract(BrokerContract):
    settle_time = 3.0

    @pytest.fixture
    def make_broker(self) -> Iterator[Callable[[str], Broker]]:
        made: list[Broker] = []

        def make(queue: str) -> Broker:
            b = TcpBroker(queue, "tcp://127.0.0.1:0")
            b.listen()  # the consumer's listener, on a free port; publish on this instance sends to it
            made.append(b)
            return b

        yield make
        for b in made:
            b.close()


class TestTcpListener(ListenerContract):
    broker_class = TcpBroker
    scheme = "tcp"
