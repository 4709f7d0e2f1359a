"""``Booster.pause()``, ``resume()`` and ``is_paused()``: added to every booster by this plugin
(``registry.add_booster_method``); the pause control of each consumer reads the flag they set."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from boostkernel import Booster


def pause_key(queue: str) -> str:
    """Store key of a queue's pause flag."""
    return f"bk:paused:{queue}"


def pause(booster: Booster[Any, Any]) -> None:
    """Pause consumption of this queue everywhere (workers with ``pausable=True`` stop fetching within ~1 s)."""
    booster.store.set(pause_key(booster.queue), True)


def resume(booster: Booster[Any, Any]) -> None:
    """Resume consumption paused by :func:`pause`."""
    booster.store.delete(pause_key(booster.queue))


def is_paused(booster: Booster[Any, Any]) -> bool:
    """True while the queue is paused."""
    return bool(booster.store.get(pause_key(booster.queue)))
