"""Every booster created in this process, by queue name: the worker CLI, the process overlay's children
and plugins (``boostkernel scheduler``, framework brokers) find boosters here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from .booster import Booster

#: Boosters by queue name.
REGISTRY: dict[str, Booster[Any, Any]] = {}


def register_booster(booster: Booster[Any, Any]) -> None:
    """Record ``booster``; a queue runs one function (redefining the same function replaces it)."""
    existing = REGISTRY.get(booster.queue)
    fn = booster.fn
    if existing is not None and existing.fn.__qualname__ != fn.__qualname__:
        raise ConfigError(
            f"queue {booster.queue!r} is already used by {existing.fn.__module__}.{existing.fn.__qualname__}; "
            "each queue runs one function"
        )
    REGISTRY[booster.queue] = booster


def get_booster(queue: str) -> Booster[Any, Any] | None:
    """The booster of ``queue`` defined in this process, or ``None``."""
    return REGISTRY.get(queue)


def all_boosters() -> list[Booster[Any, Any]]:
    return list(REGISTRY.values())
