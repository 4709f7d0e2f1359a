"""The udp broker: the broker contract for what it declares (at-most-once), and the listener checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from boostkernel_udp.broker import UdpBroker

from boostkernel.broker import Broker, Outgoing
from boostkernel.errors import MessageRejected
from boostkernel.testing import BrokerContract
from boostkernel.testing.listener import ListenerContract


class TestUdpContract(BrokerContract):
    settle_time = 3.0
    expected_failures = {"test_binary_and_large_bodies_intact":
                         "one message is one UDP datagram: at most 65,507 bytes (a 200 kB body is refused at publish)"}

    @pytest.fixture
    def make_broker(self) -> Iterator[Callable[[str], Broker]]:
        made: list[Broker] = []

        def make(queue: str) -> Broker:
            b = UdpBroker(queue, "udp://127.0.0.1:0")
            b.listen()
            made.append(b)
            return b

        yield make
        for b in made:
            b.close()


class TestUdpListener(ListenerContract):
    broker_class = UdpBroker
    scheme = "udp"


def test_oversized_message_refused_at_publish() -> None:
    b = UdpBroker("udp_big", "udp://127.0.0.1:9")
    with pytest.raises(MessageRejected, match="UDP datagram"):
        b.publish(Outgoing("x", b"{" + b" " * 70_000 + b"}"))
    b.close()
