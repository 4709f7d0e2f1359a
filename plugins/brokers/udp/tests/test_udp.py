"""The udp broker: the broker contract for what it declares (at-most-once), and the listener checks."""

from __future__ import annotations

import pytest
from boostkernel_udp.broker import UdpBroker

from boostkernel.broker import Outgoing
from boostkernel.errors import MessageRejected
from boostkernel.testing.listener import ListenerBrokerContract, ListenerContract


class TestUdpContract(ListenerBrokerContract):
    broker_class = UdpBroker
    expected_failures = {"test_binary_and_large_bodies_intact":
                         "one message is one UDP datagram: at most 65,507 bytes (a 200 kB body is refused at publish)"}


class TestUdpListener(ListenerContract):
    broker_class = UdpBroker


def test_oversized_message_refused_at_publish() -> None:
    b = UdpBroker("udp_big", "udp://127.0.0.1:9")
    with pytest.raises(MessageRejected, match="UDP datagram"):
        b.publish(Outgoing("x", b"{" + b" " * 70_000 + b"}"))
    b.close()
