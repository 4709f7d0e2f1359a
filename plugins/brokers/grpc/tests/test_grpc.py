"""The grpc broker: the broker contract for what it declares (at-most-once), the listener checks, the RPC."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from boostkernel_grpc import call
from boostkernel_grpc.broker import GrpcBroker

from boostkernel.broker import Broker
from boostkernel.testing import BrokerContract
from boostkernel.testing.listener import ListenerContract, SyncCallContract


class TestGrpcContract(BrokerContract):
    settle_time = 3.0

    @pytest.fixture
    def make_broker(self) -> Iterator[Callable[[str], Broker]]:
        made: list[Broker] = []

        def make(queue: str) -> Broker:
            b = GrpcBroker(queue, "grpc://127.0.0.1:0")
            b.listen()
            made.append(b)
            return b

        yield make
        for b in made:
            b.close()


class TestGrpcListener(ListenerContract):
    broker_class = GrpcBroker
    scheme = "grpc"


class TestGrpcCall(SyncCallContract):
    broker_class = GrpcBroker
    scheme = "grpc"
    call = staticmethod(call)

