"""Entry point of boostkernel-dedup (imports nothing heavy)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry

from .options import ORDER, DedupOptions


@hookimpl
def register_controls(registry: Registry) -> None:
    registry.add_control("dedup", "boostkernel_dedup.control:DedupControl", options=DedupOptions, order=ORDER,
                         summary="Skip a task whose arguments already ran successfully (optionally within dedup_ttl)")
