"""Entry point of boostkernel-dedup (imports nothing heavy)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.control import ORDER_DEDUP
from boostkernel.plugins import Registry


@hookimpl
def register_controls(registry: Registry) -> None:
    registry.add_control("dedup", "boostkernel_dedup.control:DedupControl", params=("dedup", "dedup_ttl"),
                         order=ORDER_DEDUP,
                         summary="Skip a task whose arguments already ran successfully (optionally within dedup_ttl)")
