"""The tcp broker: the broker contract for what it declares (at-most-once), and the listener checks."""

from __future__ import annotations

from boostkernel_tcp.broker import TcpBroker

from boostkernel.testing.listener import ListenerBrokerContract, ListenerContract


class TestTcpContract(ListenerBrokerContract):
    broker_class = TcpBroker


class TestTcpListener(ListenerContract):
    broker_class = TcpBroker
