"""Capped exponential backoff with jitter, for plugins' reconnect and retry loops (written once here).

    delay = Backoff(base=0.2, cap=30.0)      # 0.1-0.2 s, 0.2-0.4 s, 0.4-0.8 s … at most 30 s
    while True:
        try:
            connect()
            delay.reset()
        except ConnectionError:
            time.sleep(delay())

The jitter is a random factor drawn uniformly from ``jitter`` (default ``(0.5, 1.0)``, "equal jitter"),
so many clients that lost the same server do not come back in step. ``jitter=(1.0, 1.0)`` turns it off.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from .errors import BrokerUnavailable

T = TypeVar("T")


def backoff_delay(attempt: int, *, base: float = 0.2, cap: float = 30.0,
                  jitter: tuple[float, float] = (0.5, 1.0)) -> float:
    """The delay before retry number ``attempt`` (1, 2, …): ``base * 2 ** (attempt - 1)``, at most ``cap``,
    times a factor drawn uniformly from ``jitter``."""
    return min(cap, base * 2.0 ** min(max(attempt, 1) - 1, 62)) * random.uniform(jitter[0], jitter[1])


class Backoff:
    """Successive backoff delays for one retry loop: call it for the next delay; ``reset()`` after a success."""

    __slots__ = ("base", "cap", "jitter", "attempt")

    def __init__(self, base: float = 0.2, cap: float = 30.0, jitter: tuple[float, float] = (0.5, 1.0)) -> None:
        self.base, self.cap, self.jitter = base, cap, jitter
        self.attempt = 0

    def __call__(self) -> float:
        self.attempt += 1
        return backoff_delay(self.attempt, base=self.base, cap=self.cap, jitter=self.jitter)

    def reset(self) -> None:
        self.attempt = 0

    def __repr__(self) -> str:
        return f"Backoff(base={self.base!r}, cap={self.cap!r}, jitter={self.jitter!r}, attempt={self.attempt})"


def retry_unavailable(fn: Callable[[], T], timeout: float, what: str, logger: logging.Logger,
                      backoff: Backoff | None = None) -> T:
    """``fn()``, called again after a backoff delay while it raises ``BrokerUnavailable``, until ``timeout``
    seconds have passed (then the last error is raised). Each retry is logged as a warning naming ``what``.
    The default backoff starts at 0.1 s, doubles up to 5 s, with +-20% jitter."""
    deadline = time.monotonic() + timeout
    delays = backoff if backoff is not None else Backoff(base=0.1, cap=5.0, jitter=(0.8, 1.2))
    while True:
        try:
            return fn()
        except BrokerUnavailable as exc:
            delay = delays()
            if time.monotonic() + delay > deadline:
                raise
            logger.warning("%s failed (%s); retrying in %.2fs", what, exc, delay)
            time.sleep(delay)
