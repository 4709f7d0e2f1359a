"""The timeout control: stop a task that runs longer than ``timeout`` seconds.

* **threads** (and any executor declaring ``capabilities.timeout``): the call runs through the executor's
  ``call_with_timeout``; for threads that is a helper thread which, after the deadline, receives
  :class:`~boostkernel.errors.TaskTimeout` as an asynchronous exception while the worker goes on at once.
  Python code (loops, ``time.sleep`` in a loop, I/O with timeouts) stops at its next bytecode; a call
  blocked inside C code (one long ``time.sleep(60)``, a socket read without timeout) cannot be interrupted
  by CPython: the worker still moves on at the deadline, and the abandoned helper thread ends when that C
  call returns (its result is discarded).
* **asyncio**: ``async def`` tasks are cancelled with ``asyncio.wait_for``. A *sync* function under the
  asyncio executor runs in the loop's thread pool: the worker moves on at the deadline but the thread
  cannot be cancelled (same C-call limit as above).
* **processes** (``processes=N`` / ``multi_process_consume``): each child runs its own executor, so the
  timeout works in every child exactly as in its concurrency mode.
* **solo** cannot stop a running task (it runs inline in the only thread): decoration fails.

``TaskOptions(timeout=...)`` overrides the timeout for one message. A timeout raises ``TaskTimeout`` in
the worker: it is retried like any exception when the retry control is on, else the message is
dead-lettered with the reason.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

from boostkernel.control import Control, TaskContext
from boostkernel.errors import TaskTimeout


class TimeoutControl(Control):
    name = "timeout"
    needs_executor = ("timeout", "timeout={params.timeout!r} cannot work with concurrency={params.concurrency!r}: "
                      "that mode runs each task inline in its only thread and cannot stop it. Use "
                      "concurrency='threads' (or 'asyncio' for async functions), or drop the timeout")

    def __init__(self, booster: Any) -> None:
        super().__init__(booster)
        timeout = self.booster.params.timeout
        assert timeout is not None  # the kernel switches a control on only when its parameter is set
        self.timeout = float(timeout)
        cap = self.booster.params.timeout_cap
        #: A message's own timeout is clamped to this (a message from elsewhere cannot raise it).
        self.cap: float = float(cap) if cap is not None else float("inf")
        self._executor: Any = None

    def _limit(self, ctx: TaskContext) -> float:
        t = ctx.envelope.options.get("timeout")
        return min(float(t), self.cap) if isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0 \
            else self.timeout

    @property
    def executor(self) -> Any:
        if self._executor is None:
            c = self.consumer
            self._executor = c.executor if c is not None else self.booster.executor_class(1)
        return self._executor

    def around(self, ctx: TaskContext, call_next: Callable[[], Any]) -> Any:
        # The helper thread must see the same contextvars (current_task(), the task id in log records).
        run = contextvars.copy_context().run
        return self.executor.call_with_timeout(lambda: run(call_next), self._limit(ctx))

    async def around_async(self, ctx: TaskContext, call_next: Callable[[], Awaitable[Any]]) -> Any:
        limit = self._limit(ctx)
        try:
            return await asyncio.wait_for(call_next(), limit)
        except asyncio.TimeoutError:
            raise TaskTimeout(f"task exceeded its {limit}s timeout and was cancelled") from None
