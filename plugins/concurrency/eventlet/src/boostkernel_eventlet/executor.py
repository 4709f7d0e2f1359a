"""A bounded eventlet GreenPool: cooperative green threads for I/O-bound tasks.

eventlet needs the whole process monkey-patched *before* other modules create sockets, locks or threads.
``boostkernel worker`` (and every child of the process overlay) does that for you: it calls
:meth:`EventletExecutor.prepare_process` before importing your module. A consumer started in a process
that was not patched refuses to start, with the exact fix in the error.

eventlet itself is in maintenance mode (its authors recommend against it for new projects); this mode is
here for code that already depends on it. Prefer ``gevent`` or ``asyncio`` for new work.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any

with warnings.catch_warnings():  # eventlet warns on import that it is deprecated; the README says so
    warnings.simplefilter("ignore")
    import eventlet
    import eventlet.greenthread
    from eventlet import patcher

from boostkernel.errors import ConfigError, TaskTimeout
from boostkernel.executor import Executor, ExecutorCapabilities, Job

log = logging.getLogger("boostkernel.eventlet")

#: Modules that must be patched for the kernel's fetch loop, locks, sleeps and socket I/O to cooperate.
REQUIRED_PATCHES = ("socket", "thread", "time", "select")

NOT_PATCHED = (
    "concurrency='eventlet' needs eventlet's monkey-patching before anything else is imported, and this "
    "process is not patched (missing: {missing}). Either run your module with the worker, which patches "
    "for you: `boostkernel worker your.module` (or `boostkernel worker your.module --concurrency eventlet`), "
    "or make these the first two lines of your program's entry point, before any other import:\n"
    "    import eventlet\n"
    "    eventlet.monkey_patch()"
)


def missing_patches() -> list[str]:
    return [m for m in REQUIRED_PATCHES if not patcher.is_monkey_patched(m)]


def is_patched() -> bool:
    return not missing_patches()


class EventletExecutor(Executor):
    name = "eventlet"
    capabilities = ExecutorCapabilities(timeout=True, cancel=True, async_functions=False, sync_functions=True,
                                        exclusive=True)

    @classmethod
    def prepare_process(cls) -> None:
        if not is_patched():
            eventlet.monkey_patch()

    def __init__(self, max_workers: int, **options: Any) -> None:
        missing = missing_patches()
        if missing:
            raise ConfigError(NOT_PATCHED.format(missing=", ".join(missing)))
        super().__init__(max_workers, **options)
        self._pool = eventlet.GreenPool(max_workers)
        self._closed = False

    @property
    def idle(self) -> int:
        return int(self._pool.free())

    def submit(self, job: Job) -> None:
        if self._closed:
            raise RuntimeError("executor is shut down")
        self._pool.spawn_n(_run, job)  # blocks (cooperatively) while max_workers green threads run

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        self._closed = True
        if wait:
            with eventlet.Timeout(timeout, False):  # None: no limit; on expiry just stop waiting
                self._pool.waitall()

    def current_handle(self) -> Any:
        return eventlet.greenthread.getcurrent()

    def interrupt(self, handle: Any, exc: type[BaseException]) -> bool:
        if handle is None or getattr(handle, "dead", True):
            return False
        hub = eventlet.hubs.get_hub()
        hub.schedule_call_global(0, handle.throw, exc)  # raised at the green thread's next switch
        return True

    def call_with_timeout(self, fn: Callable[[], Any], timeout: float) -> Any:
        """Run ``fn`` in this green thread under ``eventlet.Timeout``.

        The timeout fires at the function's next cooperative point (I/O, sleep, lock wait). A pure-Python
        loop that never yields cannot be interrupted by eventlet; it is reported when it returns.
        """
        with eventlet.Timeout(timeout, TaskTimeout(f"task exceeded its {timeout}s timeout and was stopped")):
            return fn()


def _run(job: Job) -> None:
    try:
        job.run()
    except Exception:  # noqa: BLE001 - one job must never take the pool down
        log.exception("job crashed")
