"""A bounded eventlet GreenPool: cooperative green threads for I/O-bound tasks.

eventlet needs the whole process monkey-patched *before* other modules create sockets, locks or threads.
``boostkernel worker`` (and every child of the process overlay) does that for you: it calls
:meth:`EventletExecutor.prepare_process` before importing your module. A consumer started in a process
that was not patched refuses to start, with the exact fix in the error (see :mod:`boostkernel.green`).

eventlet itself is in maintenance mode (its authors recommend against it for new projects); this mode is
here for code that already depends on it. Prefer ``gevent`` or ``asyncio`` for new work.
"""

from __future__ import annotations

import warnings
from contextlib import AbstractContextManager
from typing import Any

with warnings.catch_warnings():  # eventlet warns on import that it is deprecated; the README says so
    warnings.simplefilter("ignore")
    import eventlet
    import eventlet.greenthread
    from eventlet import patcher

from boostkernel.executor import Job
from boostkernel.green import GreenExecutor


class EventletExecutor(GreenExecutor):
    name = "eventlet"
    required_patches = ("socket", "thread", "time", "select")
    patch_lines = "    import eventlet\n    eventlet.monkey_patch()"

    @classmethod
    def is_module_patched(cls, module: str) -> bool:
        return bool(patcher.is_monkey_patched(module))

    @classmethod
    def patch_all(cls) -> None:
        eventlet.monkey_patch()

    def __init__(self, max_workers: int, **options: Any) -> None:
        super().__init__(max_workers, **options)
        self._pool = eventlet.GreenPool(max_workers)

    @property
    def idle(self) -> int:
        return int(self._pool.free())

    def _spawn(self, job: Job) -> None:
        self._pool.spawn_n(self._run_job, job)  # blocks (cooperatively) while max_workers green threads run

    def _wait_all(self, timeout: float | None) -> None:
        with eventlet.Timeout(timeout, False):  # None: no limit; on expiry just stop waiting
            self._pool.waitall()

    def _timeout(self, seconds: float, exc: BaseException) -> AbstractContextManager[Any]:
        t: AbstractContextManager[Any] = eventlet.Timeout(seconds, exc)
        return t

    def current_handle(self) -> Any:
        return eventlet.greenthread.getcurrent()

    def interrupt(self, handle: Any, exc: type[BaseException]) -> bool:
        if handle is None or getattr(handle, "dead", True):
            return False
        hub = eventlet.hubs.get_hub()
        hub.schedule_call_global(0, handle.throw, exc)  # raised at the green thread's next switch
        return True
