"""Entry point of boostkernel-expiry (imports nothing heavy)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry

from .options import ORDER, ExpiryOptions


@hookimpl
def register_controls(registry: Registry) -> None:
    registry.add_control("expiry", "boostkernel_expiry.control:ExpiryControl", options=ExpiryOptions, order=ORDER, summary="Drop messages older than N seconds instead of running them")
