"""A bounded gevent pool: cooperative greenlets for I/O-bound tasks.

gevent needs the whole process monkey-patched *before* other modules create sockets, locks or threads.
``boostkernel worker`` (and every child of the process overlay) does that for you: it calls
:meth:`GeventExecutor.prepare_process` before importing your module. A consumer started in a process
that was not patched refuses to start, with the exact fix in the error (see :mod:`boostkernel.green`).

With the patch applied, the kernel's fetch "thread" is a greenlet: ``submit`` blocks cooperatively while
the pool is full (back-pressure), and the running greenlets keep making progress.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import gevent
from gevent import monkey
from gevent.event import Event
from gevent.lock import BoundedSemaphore

from boostkernel.executor import Job
from boostkernel.green import GreenExecutor


class GeventExecutor(GreenExecutor):
    name = "gevent"
    required_patches = ("socket", "threading", "time", "select")
    patch_lines = "    from gevent import monkey\n    monkey.patch_all()"

    @classmethod
    def is_module_patched(cls, module: str) -> bool:
        return bool(monkey.is_module_patched(module))

    @classmethod
    def patch_all(cls) -> None:
        monkey.patch_all()

    def __init__(self, max_workers: int, **options: Any) -> None:
        super().__init__(max_workers, **options)
        # A semaphore plus raw greenlets (``spawn_raw``): about half the cost per task of ``gevent.pool.Pool``,
        # whose ``Greenlet`` objects carry links and results nobody reads here.
        self._slots = BoundedSemaphore(max_workers)
        self._running = 0
        self._all_done = Event()
        self._all_done.set()

    @property
    def idle(self) -> int:
        return self.max_workers - self._running

    def _spawn(self, job: Job) -> None:
        self._slots.acquire()  # blocks (cooperatively) while max_workers greenlets run: back-pressure
        self._running += 1
        self._all_done.clear()
        gevent.spawn_raw(self._run, job)

    def _run(self, job: Job) -> None:
        try:
            self._run_job(job)
        finally:
            self._running -= 1  # one OS thread: greenlets never run at the same time
            if self._running == 0:
                self._all_done.set()
            self._slots.release()

    def _wait_all(self, timeout: float | None) -> None:
        self._all_done.wait(timeout)

    def _timeout(self, seconds: float, exc: BaseException) -> AbstractContextManager[Any]:
        return gevent.Timeout(seconds, exc)

    def current_handle(self) -> Any:
        return gevent.getcurrent()

    def interrupt(self, handle: Any, exc: type[BaseException]) -> bool:
        if handle is None or getattr(handle, "dead", True) or handle is gevent.getcurrent():
            return False
        gevent.kill(handle, exc)  # raised in the greenlet at its next cooperative switch
        return True
