"""A bounded thread pool that grows on demand and shrinks when idle, with back-pressure on submit."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from boostkernel.executor import Executor, ExecutorCapabilities, Job
from boostkernel.timeouts import call_with_timeout, raise_in_thread

log = logging.getLogger("boostkernel.threads")


class ThreadsExecutor(Executor):
    """Jobs wait in one deque; idle threads wait on one condition.

    A submitted job wakes at most one idle thread, and only when no thread is already on its way to the
    deque (a wake token or a starting thread): a thread that takes a job and sees more waiting wakes the next one. A burst of short
    jobs is run by the few threads that are awake instead of waking every thread of the pool for one job
    each (each wake is a context switch and a fight for the GIL, with the broker's network thread among the
    losers); a burst of long jobs still reaches every thread, one wake-up apart. A ``submit`` blocked on a full
    pool is woken when the pool has run dry or a quarter of it is free, not at every finished job."""

    name = "threads"
    capabilities = ExecutorCapabilities(timeout=True, cancel=True, async_functions=False)

    def __init__(self, max_workers: int, idle_timeout: float = 10.0, **options: Any) -> None:
        super().__init__(max_workers, **options)
        self.idle_timeout = idle_timeout
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # idle threads wait here for a job
        self._room = threading.Condition(self._lock)  # a submit waits here while max_workers jobs are held
        self._pending: deque[Job] = deque()
        self._threads: set[threading.Thread] = set()
        self._idle_threads = 0  # waiting on _work
        self._wakes = 0  # notifications sent to idle threads and not yet taken by one
        self._starting = 0  # threads made and not yet running their loop
        self._running = 0  # jobs held: pending or running (at most max_workers)
        self._blocked = 0  # submits waiting on _room
        self._refill_at = max(1, max_workers // 4)
        self._shutdown = False

    @property
    def idle(self) -> int:
        return self.max_workers - self._running

    @property
    def thread_count(self) -> int:
        return len(self._threads)

    def submit(self, job: Job) -> None:
        with self._lock:
            while self._running >= self.max_workers and not self._shutdown:  # back-pressure
                self._blocked += 1
                self._room.wait()
                self._blocked -= 1
            if self._shutdown:
                raise RuntimeError("executor is shut down")
            self._running += 1
            self._pending.append(job)
            start = None if self._wakes or self._starting else self._call_one()
        if start is not None:
            start.start()

    def _call_one(self) -> threading.Thread | None:
        """Send one thread to the deque (lock held): wake an idle one not woken yet, or make one to start
        (returned, for the caller to start once the lock is released) if the pool may grow."""
        if self._idle_threads > self._wakes:
            self._wakes += 1  # a token, not a count of notified threads: any waiter that returns may take it
            self._work.notify()
        elif len(self._threads) < self.max_workers:
            t = threading.Thread(target=self._worker, name=f"boostkernel-worker-{len(self._threads)}", daemon=True)
            self._threads.add(t)
            self._starting += 1
            return t
        return None

    def _done(self) -> None:
        """A job finished (lock held): free its slot, and wake a blocked submit once the pool ran dry or a
        quarter of it is free (the threads still have jobs to run until then)."""
        self._running -= 1
        if self._blocked and (not self._pending or self.max_workers - self._running >= self._refill_at):
            self._room.notify()

    def run_here(self, job: Job) -> bool:
        with self._lock:
            if self._shutdown or self._running >= self.max_workers:
                return False
            self._running += 1
        try:
            job.run()
        except BaseException:  # noqa: BLE001 - as in a pool thread: the caller's loop goes on
            log.exception("job crashed")
        finally:
            with self._lock:
                self._done()
        return True

    def _worker(self) -> None:
        lock, pending, work = self._lock, self._pending, self._work
        me = threading.current_thread()
        with lock:
            self._starting -= 1
        while True:
            start = None
            with lock:
                while not pending:
                    if self._shutdown:
                        self._threads.discard(me)
                        return
                    self._idle_threads += 1
                    notified = work.wait(self.idle_timeout)
                    self._idle_threads -= 1
                    if self._wakes:
                        # Take a wake token whether or not this wait returned "notified": a waiter that timed
                        # out just as notify() picked it looks timed out, and its token would be lost.
                        self._wakes -= 1
                    elif not notified and not pending:  # idle for idle_timeout: shrink
                        self._threads.discard(me)
                        return
                job = pending.popleft()
                if pending:
                    if not (self._wakes or self._starting):  # more waiting: send the next thread
                        start = self._call_one()
                elif self._blocked and self._running < self.max_workers:
                    self._room.notify()  # the queue ran dry with a slot free: a blocked submit goes on now
            if start is not None:
                start.start()
            try:
                job.run()
            except BaseException:  # noqa: BLE001 - a job must never kill the pool thread
                log.exception("job crashed")
            with lock:
                self._done()

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        """Jobs already submitted still run; then every thread exits."""
        with self._lock:
            if self._shutdown:
                return
            self._shutdown = True
            threads = list(self._threads)
            self._work.notify_all()
            self._room.notify_all()
        if wait:
            deadline = None if timeout is None else time.monotonic() + timeout
            for t in threads:
                if t is not threading.current_thread():
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
