"""Concurrency modes of a process: preparing it (gevent/eventlet monkey-patch), overriding a booster's mode,
and refusing mixes that cannot share a process."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .errors import ConfigError
from .plugins import get_plugins
from .running import running_consumers

_prepared: set[str] = set()


def prepare_concurrency(name: str) -> None:
    """Prepare this process for concurrency ``name`` (gevent/eventlet: monkey-patch) before user imports."""
    if name in _prepared:
        return
    cls = get_plugins().get("executor", name).load()
    cls.prepare_process()
    _prepared.add(name)


def is_prepared(name: str) -> bool:
    return name in _prepared


def _executor_class(booster: Any) -> Any:
    return getattr(booster, "executor_class", None)


def _exclusive(booster: Any) -> bool:
    cls = _executor_class(booster)
    return bool(cls is not None and cls.capabilities.exclusive)


def set_concurrency(boosters: Iterable[Any], name: str) -> None:
    """Run ``boosters`` with concurrency ``name`` instead of their own (``boostkernel worker --concurrency``)."""
    cls = get_plugins().get("executor", name).load()
    for b in boosters:
        if b.broker_class.capabilities.needs_own_worker:
            continue
        if b.is_async and not cls.capabilities.async_functions:
            raise ConfigError(f"{b.fn.__qualname__} (queue {b.queue!r}) is an async function and "
                              f"--concurrency {name} runs only plain functions; use asyncio")
        b.params.concurrency = name
        b.executor_class = cls


def check_modes(boosters: Iterable[Any]) -> str | None:
    """Refuse a mix of modes in one process when one of them is exclusive; return the exclusive mode."""
    by_mode: dict[str, list[str]] = {}
    exclusive: set[str] = set()
    for b in boosters:
        if _executor_class(b) is None or b.broker_class.capabilities.needs_own_worker:
            continue
        by_mode.setdefault(b.params.concurrency, []).append(b.queue)
        if _exclusive(b):
            exclusive.add(b.params.concurrency)
    if exclusive and len(by_mode) > 1:
        listing = "; ".join(f"{m}: {', '.join(sorted(qs))}" for m, qs in sorted(by_mode.items()))
        raise ConfigError(
            f"concurrency {'/'.join(sorted(exclusive))} monkey-patches the whole process and cannot share it "
            f"with other modes ({listing}). Run each mode in its own worker, e.g. "
            + " and ".join(f"`boostkernel worker MODULE -q {' -q '.join(sorted(qs))}`" for qs in by_mode.values())
            + ", or run them all in one mode with `--concurrency NAME`."
        )
    return next(iter(exclusive), None)


def check_can_start(booster: Any) -> None:
    """Called before a consumer starts: an exclusive mode cannot share the process with another mode."""
    others = [b for c in running_consumers() if (b := getattr(c, "booster", None)) is not None and b is not booster]
    check_modes([*others, booster])
