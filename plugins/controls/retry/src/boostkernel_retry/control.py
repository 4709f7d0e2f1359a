"""The retry control: run a failed task again, at once or after an exponential backoff with jitter.

* ``retry_mode="worker"`` (default) retries in place, in the same worker slot; the envelope's ``attempt``
  goes up by one per retry, so ``current_task().attempt`` says which attempt is running.
* ``retry_mode="republish"`` raises :class:`~boostkernel.errors.Retry` with the backoff as its delay; the
  kernel publishes a copy of the message with ``attempt + 1`` and that eta, then acks the original, so
  a long backoff holds no worker and the retry may run on any machine.
* Only exceptions in ``retry_on`` are retried; other exceptions, and the signals (``Skip``, ``Requeue``,
  ``DeadLetter``), pass through unchanged. A task raising ``Retry`` itself is retried too, and counts.
* When retries run out the exception propagates: the kernel dead-letters the message with the reason
  ("failed after N attempt(s): ...").
* ``TaskOptions(max_retries=...)`` overrides ``max_retries`` for one message.

Backoff before retry ``n`` (1-based): ``min(retry_backoff_max, retry_backoff * 2 ** (n - 1))``; with
``retry_jitter`` the delay is drawn uniformly from ``[delay / 2, delay]`` ("equal jitter").
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

from boostkernel.control import Control, TaskContext
from boostkernel.errors import ConfigError, Retry, Signal, TaskCancelled


class RetryControl(Control):
    name = "retry"
    handles_retry = True  # the kernel's default Retry limit does not apply: max_retries decides

    @classmethod
    def check(cls, booster: Any) -> None:
        super().check(booster)
        p = booster.params
        if not isinstance(p.retry_backoff, (int, float)) or p.retry_backoff < 0:
            raise ConfigError(f"retry_backoff={p.retry_backoff!r}: must be a number of seconds >= 0")
        if not isinstance(p.retry_backoff_max, (int, float)) or p.retry_backoff_max <= 0:
            raise ConfigError(f"retry_backoff_max={p.retry_backoff_max!r}: must be a number of seconds > 0")
        for t in p.retry_on:
            if issubclass(t, Signal):
                raise ConfigError(f"retry_on contains the signal {t.__name__}; signals steer the message and are "
                                  "never retried. List the exceptions to retry, e.g. retry_on=(ConnectionError,)")

    def __init__(self, booster: Any) -> None:
        super().__init__(booster)
        p = self.booster.params
        self.max_retries = p.max_retries
        #: A message's own max_retries is clamped to this (a message from elsewhere cannot raise it).
        self.max_cap: int | None = p.max_retries_cap
        self.base, self.cap, self.jitter = float(p.retry_backoff), float(p.retry_backoff_max), p.retry_jitter
        self.retry_on = p.retry_on
        self.republish = p.retry_mode == "republish"
        if self.republish:
            self.around = self._around_republish  # type: ignore[method-assign]
            self.around_async = self._around_async_republish  # type: ignore[method-assign]

    # --- policy -----------------------------------------------------------------------------------
    def backoff(self, retry_number: int) -> float:
        """Seconds to wait before retry ``retry_number`` (1 for the first retry)."""
        if self.base <= 0:
            return 0.0
        delay = min(self.cap, self.base * 2 ** (retry_number - 1))
        return random.uniform(delay / 2, delay) if self.jitter else delay

    def _limit(self, ctx: TaskContext) -> int:
        override = ctx.envelope.options.get("max_retries")
        if not isinstance(override, int) or isinstance(override, bool):
            return int(self.max_retries)
        return int(override) if self.max_cap is None else min(int(override), self.max_cap)

    def _delay_for(self, ctx: TaskContext, exc: BaseException) -> float | None:
        """The delay before the next attempt, or ``None`` if ``exc`` must not be retried (now)."""
        if isinstance(exc, Retry):
            delay = float(exc.delay)
        elif isinstance(exc, (Signal, TaskCancelled)) or not isinstance(exc, self.retry_on):
            return None
        else:
            delay = -1.0
        if ctx.envelope.attempt >= self._limit(ctx):
            return None
        return self.backoff(ctx.envelope.attempt + 1) if delay < 0 else delay

    def _log_retry(self, ctx: TaskContext, exc: BaseException, delay: float) -> None:
        log = self.consumer.log if self.consumer is not None else None
        if log is not None:
            log.warning("task %s attempt %d failed (%s: %s); retry %d/%d in %.2fs", ctx.envelope.id,
                        ctx.envelope.attempt + 1, type(exc).__name__, exc, ctx.envelope.attempt + 1,
                        self._limit(ctx), delay)

    # --- in the worker ------------------------------------------------------------------------------
    def around(self, ctx: TaskContext, call_next: Callable[[], Any]) -> Any:
        while True:
            try:
                return call_next()
            except BaseException as exc:
                delay = self._delay_for(ctx, exc)
                if delay is None:
                    if isinstance(exc, Retry):  # the task asked for a retry but none are left
                        raise RuntimeError(f"retries exhausted: {exc}") from exc
                    raise
                self._log_retry(ctx, exc, delay)
                if delay > 0 and self.sleep(delay):
                    # The worker is stopping: hand the retry to the queue instead of sleeping it out.
                    raise Retry(delay=0.0, reason=f"worker stopping during backoff: {exc}") from exc
                ctx.envelope.attempt += 1

    async def around_async(self, ctx: TaskContext, call_next: Callable[[], Awaitable[Any]]) -> Any:
        import asyncio

        while True:
            try:
                return await call_next()
            except Exception as exc:
                delay = self._delay_for(ctx, exc)
                if delay is None:
                    if isinstance(exc, Retry):
                        raise RuntimeError(f"retries exhausted: {exc}") from exc
                    raise
                self._log_retry(ctx, exc, delay)
                if delay > 0:
                    await asyncio.sleep(delay)
                ctx.envelope.attempt += 1

    # --- by republishing ----------------------------------------------------------------------------
    def _around_republish(self, ctx: TaskContext, call_next: Callable[[], Any]) -> Any:
        try:
            return call_next()
        except Exception as exc:
            self._to_retry(ctx, exc)
            raise

    async def _around_async_republish(self, ctx: TaskContext, call_next: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await call_next()
        except Exception as exc:
            self._to_retry(ctx, exc)
            raise

    def _to_retry(self, ctx: TaskContext, exc: BaseException) -> None:
        delay = self._delay_for(ctx, exc)
        if delay is None:
            if isinstance(exc, Retry):
                raise RuntimeError(f"retries exhausted: {exc}") from exc
            return
        self._log_retry(ctx, exc, delay)
        raise Retry(delay=delay, reason=f"{type(exc).__name__}: {exc}") from exc
