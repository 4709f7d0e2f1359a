"""Workflows for boostkernel: ``chain``, ``group`` and ``chord`` over boosters (docs/workflows.md).

``f.s(*args, **kwargs)`` (or :func:`sig`) makes a signature; ``f.si(...)`` one that ignores the previous
step's result. Boosters that are chain steps or chord members need ``@boost(..., results=True,
workflow=True)``; a chain's last step, a chord's callback and a plain group's members need ``results=True``.
"""

from __future__ import annotations

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
