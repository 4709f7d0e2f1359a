"""boostkernel-grpc: a brokerless gRPC broker; :func:`call` returns a task's result in the answer of a unary call (RPC)."""

from __future__ import annotations

from boostkernel.results import call

__all__ = ["call"]
