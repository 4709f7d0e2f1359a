"""The store interface: results, status records and the coordination state controls share.

A store holds JSON values under string keys with optional TTLs, counters, leases (locks), worker
heartbeats and task records. Controls that coordinate across processes or machines (global rate limit,
dedup, pause, cancel, schedules firing once) and the results of ``AsyncResult.get()`` all stand on it.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from .params import BoostParams


@dataclass(frozen=True)
class StoreCapabilities:
    cross_process: bool = True
    """State is shared by every process on the host."""
    cross_host: bool = False
    """State is shared across machines."""
    durable: bool = False
    push_wait: bool = False
    """``wait_result`` wakes when the result lands instead of polling."""

    def as_dict(self) -> dict[str, bool]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Store(abc.ABC):
    name: ClassVar[str] = "abstract"
    capabilities: ClassVar[StoreCapabilities] = StoreCapabilities()
    default_url: ClassVar[str | None] = None

    def __init__(self, url: str | None = None, params: BoostParams | None = None, **options: Any) -> None:
        self.url = url or self.default_url
        self.params = params
        self.options = options

    # --- task records and results ---------------------------------------------------------------
    @abc.abstractmethod
    def put_result(self, task_id: str, record: dict[str, Any], ttl: float) -> None:
        """Store the record of ``task_id`` (status, result or error, timings …) and wake its waiters."""

    @abc.abstractmethod
    def get_result(self, task_id: str, timeout: float = 0.0) -> dict[str, Any] | None:
        """The record of ``task_id``; wait up to ``timeout`` seconds for a *finished* one. ``None`` if none."""

    def get_results(self, task_ids: Sequence[str], timeout: float = 0.0) -> list[dict[str, Any] | None]:
        import time

        deadline = time.monotonic() + timeout
        return [self.get_result(t, max(0.0, deadline - time.monotonic())) for t in task_ids]

    # --- key/value, counters, locks ---------------------------------------------------------------
    @abc.abstractmethod
    def set(self, key: str, value: Any, ttl: float | None = None, only_if_absent: bool = False) -> bool:
        """Set a JSON value. With ``only_if_absent``, return False and change nothing if the key exists."""

    @abc.abstractmethod
    def get(self, key: str) -> Any:
        """The value, or ``None`` if absent or expired."""

    @abc.abstractmethod
    def delete(self, key: str) -> bool:
        """Remove the key; True if it existed."""

    @abc.abstractmethod
    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Atomically add ``amount``; a new key starts at 0 and gets ``ttl``. Return the new value."""

    def acquire_lock(self, name: str, owner: str, ttl: float) -> bool:
        """Take (or renew, if ``owner`` holds it) a lease on ``name`` for ``ttl`` seconds."""
        if self.set(f"lock:{name}", owner, ttl=ttl, only_if_absent=True):
            return True
        if self.get(f"lock:{name}") == owner:
            self.set(f"lock:{name}", owner, ttl=ttl)
            return True
        return False

    def release_lock(self, name: str, owner: str) -> bool:
        if self.get(f"lock:{name}") == owner:
            return self.delete(f"lock:{name}")
        return False

    def keys(self, prefix: str) -> list[str]:
        """The live keys starting with ``prefix`` (the dashboard lists task records with it on a store that
        cannot search them itself).

        Optional: a store that cannot list its keys keeps this default, and the dashboard says so."""
        raise NotImplementedError(f"store {self.name!r} cannot list its keys")

    # --- workers ------------------------------------------------------------------------------
    def heartbeat(self, worker_id: str, info: dict[str, Any], ttl: float) -> None:
        self.set(f"worker:{worker_id}", info, ttl=ttl)

    def close(self) -> None:
        """Release connections. Idempotent."""
