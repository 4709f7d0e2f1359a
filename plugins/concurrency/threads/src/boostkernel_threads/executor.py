"""A bounded thread pool that grows on demand and shrinks when idle, with back-pressure on submit."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from boostkernel.executor import Executor, ExecutorCapabilities, Job
from boostkernel.timeouts import call_with_timeout, raise_in_thread

log = logging.getLogger("boostkernel.threads")


class ThreadsExecutor(Executor):
    name = "threads"
    capabilities = ExecutorCapabilities(timeout=True, cancel=True, async_functions=False)

    def __init__(self, max_workers: int, idle_timeout: float = 10.0, **options: Any) -> None:
        super().__init__(max_workers, **options)
        self.idle_timeout = idle_timeout
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._slots = threading.Semaphore(max_workers)
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._idle_threads = 0
        self._running = 0
        self._shutdown = False

    @property
    def idle(self) -> int:
        return self.max_workers - self._running

    @property
    def thread_count(self) -> int:
        return len(self._threads)

    def submit(self, job: Job) -> None:
        self._slots.acquire()  # back-pressure: wait for a free slot
        with self._lock:
            if self._shutdown:
                self._slots.release()
                raise RuntimeError("executor is shut down")
            self._running += 1
            grow = self._idle_threads == 0 and len(self._threads) < self.max_workers
            if grow:
                t = threading.Thread(target=self._worker, name=f"boostkernel-worker-{len(self._threads)}",
                                     daemon=True)
                self._threads.add(t)
            else:
                self._idle_threads -= 1  # reserve an idle thread for this job
        self._jobs.put(job)
        if grow:
            t.start()

    def run_here(self, job: Job) -> bool:
        if not self._slots.acquire(blocking=False):
            return False
        with self._lock:
            if self._shutdown:
                self._slots.release()
                return False
            self._running += 1
        try:
            job.run()
        except BaseException:  # noqa: BLE001 - as in a pool thread: the caller's loop goes on
            log.exception("job crashed")
        finally:
            with self._lock:
                self._running -= 1
            self._slots.release()
        return True

    def _worker(self) -> None:
        jobs, lock, slots = self._jobs, self._lock, self._slots
        me = threading.current_thread()
        while True:
            try:
                job = jobs.get(timeout=self.idle_timeout)
            except queue.Empty:
                with lock:
                    if self._idle_threads > 0:  # shrink: nobody reserved us
                        self._idle_threads -= 1
                        self._threads.discard(me)
                        return
                continue
            if job is None:
                with lock:
                    self._threads.discard(me)
                return
            try:
                job.run()
            except BaseException:  # noqa: BLE001 - a job must never kill the pool thread
                log.exception("job crashed")
            with lock:
                self._running -= 1
                self._idle_threads += 1
            slots.release()

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        with self._lock:
            if self._shutdown:
                return
            self._shutdown = True
            threads = list(self._threads)
        for _ in threads:
            self._jobs.put(None)
        if wait:
            deadline = None if timeout is None else time.monotonic() + timeout
            for t in threads:
                t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def current_handle(self) -> Any:
        return threading.current_thread()

    def interrupt(self, handle: Any, exc: type[BaseException]) -> bool:
        """Raise ``exc`` in the task's thread at its next bytecode (a blocking C call finishes first)."""
        if not isinstance(handle, threading.Thread) or not handle.is_alive():
            return False
        return raise_in_thread(handle, exc)

    def call_with_timeout(self, fn: Callable[[], Any], timeout: float) -> Any:
        """Run ``fn`` in a helper thread; after ``timeout`` raise TaskTimeout and stop the helper."""
        return call_with_timeout(fn, timeout)
