"""Entry point of boostkernel-expiry (imports nothing heavy)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.control import ORDER_EXPIRY
from boostkernel.plugins import Registry


@hookimpl
def register_controls(registry: Registry) -> None:
    registry.add_control("expiry", "boostkernel_expiry.control:ExpiryControl", params=("expires",),
                         order=ORDER_EXPIRY, summary="Drop messages older than N seconds instead of running them")
