"""Execution statistics for boostkernel: ``@boost(..., stats_interval=10)``.

:func:`snapshot` returns the last interval's figures of every worker of a queue (from the store).
"""

from __future__ import annotations

from typing import Any


def snapshot(booster: Any) -> dict[str, Any] | None:
    """The latest statistics this process's consumer of ``booster`` computed (``None`` before the first)."""
    from .control import LATEST

    return LATEST.get(booster.queue)


def published(booster: Any, worker_id: str | None = None) -> dict[str, Any] | None:
    """The statistics a worker (default: this process) published to the store for ``booster``'s queue."""
    from boostkernel.context import worker_id as _wid

    return booster.store.get(f"stats:{booster.queue}:{worker_id or _wid()}")  # type: ignore[no-any-return]


__all__ = ["snapshot", "published"]
