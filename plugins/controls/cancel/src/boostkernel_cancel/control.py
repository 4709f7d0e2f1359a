"""The cancel control (``cancellable=True``): revoke a pending task, stop a running one, by task id.

``Booster.revoke(task_id)`` / ``AsyncResult.revoke()`` / ``boostkernel revoke QUEUE TASK_ID`` write a
revocation flag to the store and bump the queue's revocation counter.

* **Pending**: before a task runs, ``before()`` looks up its flag; a revoked task is acknowledged with
  status ``revoked`` and never runs (one store read per message while the control is on).
* **Running**: one watcher thread per consumer polls the queue's revocation *counter* (one store read
  every ``poll_interval`` = 0.25 s whatever the number of tasks); when it moves, it checks the flags of
  the tasks running here and stops the revoked ones:

  - threads: the function runs in a helper thread that receives ``TaskCancelled`` as an asynchronous
    exception; the worker returns at once. As with timeouts, a call blocked in C code cannot be
    interrupted by CPython: the worker moves on, the helper thread ends when the C call returns.
  - asyncio: the task's coroutine is cancelled (``Task.cancel()``).
  - gevent/eventlet: the executor's ``interrupt()`` kills the task's greenlet with ``TaskCancelled`` at its
    next cooperative switch (not verified by this plugin's tests: those modes need a monkey-patched process).

  The stopped task is acknowledged with status ``revoked`` (it is not retried).
* Executors whose capabilities do not declare ``cancel`` (solo) fail at decoration time.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from boostkernel.control import Control, TaskContext
from boostkernel.errors import Skip, TaskCancelled
from boostkernel.timeouts import raise_in_thread

from .api import revoke_generation_key, revoke_key

log = logging.getLogger("boostkernel.cancel")
POLL_INTERVAL = 0.25


class _Running:
    __slots__ = ("thread", "task", "loop", "cancelled", "done", "wake", "handle")

    def __init__(self) -> None:
        self.handle: Any = None
        """An executor's own task handle (gevent/eventlet greenlet), interrupted through the executor."""
        self.thread: threading.Thread | None = None
        self.task: asyncio.Future[Any] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.cancelled = False
        self.done = False
        self.wake = threading.Event()
        """Set when the call finishes or is cancelled, whichever comes first."""


class CancelControl(Control):
    name = "cancel"
    needs_store = True
    needs_executor = ("cancel", "cancellable=True cannot work with concurrency={params.concurrency!r}: that mode "
                      "runs each task inline in its only thread and cannot stop it. Use concurrency='threads' or "
                      "'asyncio'")

    def __init__(self, booster: Any) -> None:
        super().__init__(booster)
        self.queue = booster.queue
        self.poll_interval = float(self.options.cancel_poll_interval)
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def store(self) -> Any:
        return self.booster.store

    # --- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._watcher = threading.Thread(target=self._watch, name=f"boostkernel-cancel-{self.queue}", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(5)

    def _watch(self) -> None:
        key = revoke_generation_key(self.queue)
        seen: Any = self._read(key)
        while not self._stop.wait(self.poll_interval):
            gen = self._read(key)
            if gen == seen:
                continue
            seen = gen
            with self._lock:
                running = list(self._running.items())
            for tid, entry in running:
                if self._read(revoke_key(self.queue, tid)):
                    self._interrupt(tid, entry)

    def _read(self, key: str) -> Any:
        try:
            return self.store.get(key)
        except Exception as exc:  # noqa: BLE001 - a store outage must not kill the watcher
            log.warning("cancel watcher cannot read the store (%s: %s)", type(exc).__name__, exc)
            return None

    def _interrupt(self, tid: str, entry: _Running) -> None:
        entry.cancelled = True
        entry.wake.set()
        log.warning("task %s revoked while running: stopping it", tid)
        if entry.task is not None and entry.loop is not None:
            entry.loop.call_soon_threadsafe(entry.task.cancel)
        elif entry.handle is not None and self.consumer is not None:
            self.consumer.executor.interrupt(entry.handle, TaskCancelled)

    # --- per message ----------------------------------------------------------------------------------
    def before(self, ctx: TaskContext) -> None:
        if self.store.get(revoke_key(self.queue, ctx.envelope.id)):
            raise Skip("revoked before it ran", status="revoked")

    def around(self, ctx: TaskContext, call_next: Callable[[], Any]) -> Any:
        tid = ctx.envelope.id
        entry = _Running()
        executor = self.consumer.executor if self.consumer is not None else None
        handle = executor.current_handle() if executor is not None else None
        if handle is not None and not isinstance(handle, threading.Thread):
            return self._around_handle(tid, entry, handle, call_next)
        box: dict[str, Any] = {}
        run = contextvars.copy_context().run

        def target() -> None:
            try:
                box["result"] = run(call_next)
            except BaseException as exc:  # noqa: BLE001 - handed to the worker thread
                box["error"] = exc
            finally:
                entry.done = True
                entry.wake.set()

        t = threading.Thread(target=target, name=f"boostkernel-task-{tid[:8]}", daemon=True)
        entry.thread = t
        with self._lock:
            self._running[tid] = entry
        try:
            t.start()
            try:
                while not entry.wake.wait(0.5):  # a timed wait lets an outer timeout's exception land here
                    pass
            except BaseException as exc:  # e.g. TaskTimeout from the timeout control: stop the call too
                raise_in_thread(t, type(exc))
                raise
            if not entry.done:  # cancelled: stop the helper thread, free the worker now
                raise_in_thread(t, TaskCancelled)
                raise Skip("cancelled while running", status="revoked")
        finally:
            with self._lock:
                self._running.pop(tid, None)
        if "error" in box:
            err = box["error"]
            if isinstance(err, TaskCancelled) and entry.cancelled:
                raise Skip("cancelled while running", status="revoked")
            raise err
        return box.get("result")

    def _around_handle(self, tid: str, entry: _Running, handle: Any, call_next: Callable[[], Any]) -> Any:
        """Executors with their own task handles (gevent/eventlet): interrupt the task in place."""
        entry.handle = handle
        with self._lock:
            self._running[tid] = entry
        try:
            return call_next()
        except TaskCancelled:
            if entry.cancelled:
                raise Skip("cancelled while running", status="revoked") from None
            raise
        finally:
            with self._lock:
                self._running.pop(tid, None)

    async def around_async(self, ctx: TaskContext, call_next: Callable[[], Awaitable[Any]]) -> Any:
        tid = ctx.envelope.id
        entry = _Running()
        entry.loop = asyncio.get_running_loop()
        entry.task = asyncio.ensure_future(call_next())
        with self._lock:
            self._running[tid] = entry
        try:
            return await entry.task
        except asyncio.CancelledError:
            if entry.cancelled:
                raise Skip("cancelled while running", status="revoked") from None
            raise
        finally:
            with self._lock:
                self._running.pop(tid, None)
