"""Entry point of boostkernel-quota."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry

from .options import ORDER, QuotaOptions


@hookimpl
def register_controls(registry: Registry) -> None:
    registry.add_control("quota", "boostkernel_quota.control:Quota", options=QuotaOptions, order=ORDER,
                         summary="At most N task starts per period, shared by every worker through the store")
