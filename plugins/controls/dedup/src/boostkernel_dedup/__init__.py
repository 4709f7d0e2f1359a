"""Dedup for boostkernel: ``@boost(..., dedup=True, dedup_ttl=3600)``.

See :mod:`boostkernel_dedup.control` for how it works; :func:`forget` removes one call's marker.
"""

from __future__ import annotations

from typing import Any


def dedup_key(booster: Any, *args: Any, **kwargs: Any) -> str:
    """The store key the dedup control uses for this call of ``booster``."""
    from .control import key_for_call

    return key_for_call(booster, list(args), kwargs)


def forget(booster: Any, *args: Any, **kwargs: Any) -> bool:
    """Forget that this call ran, so the next identical message runs again. True if it was marked."""
    return bool(booster.store.delete(dedup_key(booster, *args, **kwargs)))


def forget_key(booster: Any, key: str) -> bool:
    """Like :func:`forget` for a message published with ``TaskOptions(dedup_key=key)``."""
    from .control import key_for_custom

    return bool(booster.store.delete(key_for_custom(booster.queue, key)))


__all__ = ["dedup_key", "forget", "forget_key"]
