"""boostkernel-http: a brokerless HTTP broker; :func:`call` returns a task's result in the HTTP answer (RPC)."""

from __future__ import annotations

from boostkernel.results import call

__all__ = ["call"]
