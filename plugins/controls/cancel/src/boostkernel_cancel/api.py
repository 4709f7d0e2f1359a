"""``Booster.revoke(task_id)`` (and ``AsyncResult.revoke()``): added to every booster by this plugin
(``registry.add_booster_method``); the cancel control of each consumer reads what it writes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from boostkernel import Booster


def revoke_key(queue: str, task_id: str) -> str:
    """Store key marking ``task_id`` of ``queue`` as revoked."""
    return f"bk:revoked:{queue}:{task_id}"


def revoke_generation_key(queue: str) -> str:
    """Store counter bumped at every revoke of ``queue``, so watchers poll one key, not one per task."""
    return f"bk:revoked-gen:{queue}"


def revoke(booster: Booster[Any, Any], task_id: str, ttl: float = 7 * 24 * 3600.0) -> None:
    """Revoke ``task_id``: a pending task never runs, a running one is stopped (needs ``cancellable=True``)."""
    booster.store.set(revoke_key(booster.queue, task_id), True, ttl=ttl)
    booster.store.incr(revoke_generation_key(booster.queue), 1)
