"""The grpc broker: the broker contract for what it declares (at-most-once), the listener checks, the RPC."""

from __future__ import annotations

from boostkernel_grpc import call
from boostkernel_grpc.broker import GrpcBroker

from boostkernel.testing.listener import ListenerBrokerContract, ListenerContract, SyncCallContract


class TestGrpcContract(ListenerBrokerContract):
    broker_class = GrpcBroker


class TestGrpcListener(ListenerContract):
    broker_class = GrpcBroker


class TestGrpcCall(SyncCallContract):
    broker_class = GrpcBroker
    call = staticmethod(call)

