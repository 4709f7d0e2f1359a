"""Runs jobs as coroutines on a dedicated event-loop thread; at most ``max_workers`` at once.

``asyncio`` is imported when an executor is made, not with this module: ``boostkernel plugins list``
reads the capabilities below without paying for it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from boostkernel.errors import TaskTimeout
from boostkernel.executor import Executor, ExecutorCapabilities, Job
from boostkernel.timeouts import call_with_timeout, raise_in_thread

log = logging.getLogger("boostkernel.asyncio")


class AsyncioExecutor(Executor):
    name = "asyncio"
    capabilities = ExecutorCapabilities(timeout=True, cancel=True, async_functions=True, sync_functions=True)

    def __init__(self, max_workers: int, **options: Any) -> None:
        import asyncio

        super().__init__(max_workers, **options)
        self._slots = threading.Semaphore(max_workers)
        self._running = 0
        self._count_lock = threading.Lock()
        self._idle_event = threading.Event()
        self._idle_event.set()
        self.loop = asyncio.new_event_loop()
        # Sync tasks under asyncio run in this pool so they never block the loop.
        self._sync_pool = ThreadPoolExecutor(min(64, max_workers), "boostkernel-asyncio-sync")
        self.loop.set_default_executor(self._sync_pool)
        self._thread = threading.Thread(target=self._run_loop, name="boostkernel-asyncio-loop", daemon=True)
        self._thread.start()
        self._closed = False

    def _run_loop(self) -> None:
        import asyncio

        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    @property
    def idle(self) -> int:
        return self.max_workers - self._running

    def submit(self, job: Job) -> None:
        self._slots.acquire()
        with self._count_lock:
            self._running += 1
            self._idle_event.clear()
        self.loop.call_soon_threadsafe(self._start, job)

    def _start(self, job: Job) -> None:
        self.loop.create_task(self._run(job))

    async def _run(self, job: Job) -> None:
        try:
            if job.is_async:
                await job.run_async()
            else:  # a plain function (and its controls, ack …) runs whole in the sync pool, never on the loop
                await self.loop.run_in_executor(None, job.run)
        except BaseException:  # noqa: BLE001
            log.exception("job crashed")
        finally:
            with self._count_lock:  # submit (another thread) increments it
                self._running -= 1
                if self._running == 0:
                    self._idle_event.set()
            self._slots.release()

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        if wait:
            self._idle_event.wait(timeout)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._sync_pool.shutdown(wait=wait)
            self.loop.close()

    def call_with_timeout(self, fn: Callable[[], Any], timeout: float) -> Any:
        """Sync tasks run in the sync pool: run ``fn`` in a helper thread and stop it after ``timeout``."""
        return call_with_timeout(fn, timeout)

    def current_handle(self) -> Any:
        import asyncio

        try:
            return asyncio.current_task(self.loop)
        except RuntimeError:  # a sync task in the sync pool: its thread
            return threading.current_thread()

    def interrupt(self, handle: Any, exc: type[BaseException]) -> bool:
        import asyncio

        if isinstance(handle, asyncio.Task):
            if handle.done():
                return False
            self.loop.call_soon_threadsafe(handle.cancel)  # CancelledError at its next await
            return True
        if isinstance(handle, threading.Thread) and handle.is_alive():
            return raise_in_thread(handle, exc)
        return False

    async def acall_with_timeout(self, fn: Callable[[], Awaitable[Any]], timeout: float) -> Any:
        import asyncio

        try:
            return await asyncio.wait_for(fn(), timeout)
        except asyncio.TimeoutError:
            raise TaskTimeout(f"task exceeded its {timeout}s timeout and was cancelled") from None
