"""What runs in this process: the consumers (one per booster) and the groups of worker processes.

Kept apart from the consumer and the process overlay so that signal handling, the worker and the
booster can all reach them without importing each other.
"""

from __future__ import annotations

import threading
from typing import Protocol


class Running(Protocol):
    """A consumer, or a framework's worker handle: something that runs and can be stopped."""

    @property
    def running(self) -> bool: ...

    def request_stop(self) -> None:
        """Stop fetching now (returns at once); :meth:`stop` then waits for running tasks."""

    def stop(self, timeout: float = 30.0) -> None: ...


class Group(Protocol):
    """A group of worker processes (the process overlay)."""

    @property
    def running(self) -> bool: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...

    def stop(self, timeout: float = 30.0) -> None: ...


_consumers: list[Running] = []
_groups: list[Group] = []
_lock = threading.Lock()


def add_consumer(consumer: Running) -> None:
    """Make SIGTERM/SIGINT stop ``consumer`` and ``wait_for_consumers()`` wait for it."""
    with _lock:
        _consumers.append(consumer)


def running_consumers() -> list[Running]:
    with _lock:
        return [c for c in _consumers if c.running]


def add_group(group: Group) -> None:
    with _lock:
        _groups.append(group)


def remove_group(group: Group) -> None:
    with _lock:
        if group in _groups:
            _groups.remove(group)


def all_groups() -> list[Group]:
    with _lock:
        return list(_groups)


def stop_all(timeout: float = 30.0) -> None:
    """Gracefully stop every consumer of this process (concurrently)."""
    consumers = running_consumers()
    for c in consumers:
        c.request_stop()
    threads = [threading.Thread(target=c.stop, args=(timeout,)) for c in consumers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 5)
