"""Workflows for boostkernel: ``chain``, ``group`` and ``chord`` over boosters (docs/workflows.md).

``f.s(*args, **kwargs)`` (or :func:`sig`) makes a signature; ``f.si(...)`` one that ignores the previous
step's result. Boosters that are chain steps or chord members need ``@boost(..., results=True,
workflow=True)``; a chain's last step, a chord's callback and a plain group's members need ``results=True``.

The names are imported from :mod:`boostkernel_workflow.api` on first use, so loading the plugin's entry
point (``boostkernel_workflow.plugin``) imports nothing but its options.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import (
        Chain,
        ChainResult,
        Chord,
        ChordResult,
        Group,
        GroupResult,
        Signature,
        chain,
        chord,
        group,
        sig,
    )

__all__ = ["Chain", "ChainResult", "Chord", "ChordResult", "Group", "GroupResult", "Signature", "chain", "chord",
           "group", "sig"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'boostkernel_workflow' has no attribute {name!r}")
