"""A bounded gevent pool: cooperative greenlets for I/O-bound tasks.

gevent needs the whole process monkey-patched *before* other modules create sockets, locks or threads.
``boostkernel worker`` (and every child of the process overlay) does that for you: it calls
:meth:`GeventExecutor.prepare_process` before importing your module. A consumer started in a process
that was not patched refuses to start, with the exact fix in the error.

With the patch applied, the kernel's fetch "thread" is a greenlet: ``submit`` blocks cooperatively in
``Pool.spawn`` while the pool is full (back-pressure), and the running greenlets keep making progress.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import gevent
from gevent import monkey
from gevent.event import Event
from gevent.lock import BoundedSemaphore

from boostkernel.errors import ConfigError, TaskTimeout
from boostkernel.executor import Executor, ExecutorCapabilities, Job

log = logging.getLogger("boostkernel.gevent")

#: Modules that must be patched for the kernel's fetch loop, locks, sleeps and socket I/O to cooperate.
REQUIRED_PATCHES = ("socket", "threading", "time", "select")

NOT_PATCHED = (
    "concurrency='gevent' needs gevent's monkey-patching before anything else is imported, and this "
    "process is not patched (missing: {missing}). Either run your module with the worker, which patches "
    "for you: `boostkernel worker {module}` (or `boostkernel worker {module} --concurrency gevent`), or make "
    "these the first two lines of your program's entry point, before any other import:\n"
    "    from gevent import monkey\n"
    "    monkey.patch_all()"
)


def missing_patches() -> list[str]:
    return [m for m in REQUIRED_PATCHES if not monkey.is_module_patched(m)]


def is_patched() -> bool:
    return not missing_patches()


class GeventExecutor(Executor):
    name = "gevent"
    capabilities = ExecutorCapabilities(timeout=True, cancel=True, async_functions=False, sync_functions=True,
                                        exclusive=True)

    @classmethod
    def prepare_process(cls) -> None:
        if not is_patched():
            monkey.patch_all()

    def __init__(self, max_workers: int, **options: Any) -> None:
        missing = missing_patches()
        if missing:
            raise ConfigError(NOT_PATCHED.format(missing=", ".join(missing), module="your.module"))
        super().__init__(max_workers, **options)
        # A semaphore plus raw greenlets (``spawn_raw``): about half the cost per task of ``gevent.pool.Pool``,
        # whose ``Greenlet`` objects carry links and results nobody reads here.
        self._slots = BoundedSemaphore(max_workers)
        self._running = 0
        self._all_done = Event()
        self._all_done.set()
        self._closed = False

    @property
    def idle(self) -> int:
        return self.max_workers - self._running

    def submit(self, job: Job) -> None:
        if self._closed:
            raise RuntimeError("executor is shut down")
        self._slots.acquire()  # blocks (cooperatively) while max_workers greenlets run: back-pressure
        self._running += 1
        self._all_done.clear()
        gevent.spawn_raw(self._run, job)

    def _run(self, job: Job) -> None:
        try:
            job.run()
        except Exception:  # noqa: BLE001 - one job must never take the pool down
            log.exception("job crashed")
        finally:
            self._running -= 1  # one OS thread: greenlets never run at the same time
            if self._running == 0:
                self._all_done.set()
            self._slots.release()

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        self._closed = True
        if wait:
            self._all_done.wait(timeout)

    def current_handle(self) -> Any:
        return gevent.getcurrent()

    def interrupt(self, handle: Any, exc: type[BaseException]) -> bool:
        if handle is None or getattr(handle, "dead", True) or handle is gevent.getcurrent():
            return False
        gevent.kill(handle, exc)  # raised in the greenlet at its next cooperative switch
        return True

    def call_with_timeout(self, fn: Callable[[], Any], timeout: float) -> Any:
        """Run ``fn`` in this greenlet under ``gevent.Timeout``.

        The timeout fires at the function's next cooperative point (I/O, sleep, lock wait). A pure-Python
        loop that never yields cannot be interrupted by gevent; it is reported when it returns.
        """
        t = gevent.Timeout(timeout, TaskTimeout(f"task exceeded its {timeout}s timeout and was stopped"))
        t.start()
        try:
            return fn()
        finally:
            t.close()
