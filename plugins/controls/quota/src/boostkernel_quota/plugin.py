"""Entry point of boostkernel-quota."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.control import ORDER_QUOTA
from boostkernel.plugins import Registry


@hookimpl
def register_controls(registry: Registry) -> None:
    registry.add_control("quota", "boostkernel_quota.control:Quota", params=("quota",), order=ORDER_QUOTA,
                         summary="At most N task starts per period, shared by every worker through the store")
