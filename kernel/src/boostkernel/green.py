"""The common base of green-thread executors (gevent, eventlet): patch check, back-pressure, timeouts.

Such a library needs the whole process monkey-patched *before* other modules create sockets, locks or
threads. ``boostkernel worker`` (and every child of the process overlay) calls
:meth:`GreenExecutor.prepare_process` before importing the user's module; a consumer started in a process
that was not patched refuses to start, with the exact fix in the error.

A subclass names its library and implements the primitives: whether a module is patched, patching,
spawning a job, waiting for all jobs, and a timeout context. The rest is here, written once.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, ClassVar

from .errors import ConfigError, TaskTimeout
from .executor import Executor, ExecutorCapabilities, Job

NOT_PATCHED = (
    "concurrency={name!r} needs {library}'s monkey-patching before anything else is imported, and this "
    "process is not patched (missing: {missing}). Either run your module with the worker, which patches "
    "for you: `boostkernel worker your.module` (or `boostkernel worker your.module --concurrency {name}`), "
    "or make these the first two lines of your program's entry point, before any other import:\n"
    "{patch_lines}"
)


class GreenExecutor(Executor):
    """Base class of executors running each job as a green thread of a monkey-patching library."""

    capabilities = ExecutorCapabilities(timeout=True, cancel=True, async_functions=False, sync_functions=True,
                                        exclusive=True)
    #: The library's name as users know it, when it is not the executor's ``name``.
    library: ClassVar[str] = ""
    #: Modules that must be patched for the kernel's fetch loop, locks, sleeps and socket I/O to cooperate.
    required_patches: ClassVar[tuple[str, ...]] = ()
    #: The lines that patch a process by hand, shown in the error when it is not patched.
    patch_lines: ClassVar[str] = ""

    # --- what a subclass implements -----------------------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def is_module_patched(cls, module: str) -> bool:
        """Whether the library has patched ``module`` in this process."""

    @classmethod
    @abc.abstractmethod
    def patch_all(cls) -> None:
        """Monkey-patch this process."""

    @abc.abstractmethod
    def _spawn(self, job: Job) -> None:
        """Run ``job`` (through :meth:`_run_job`) in a new green thread; block cooperatively while full."""

    @abc.abstractmethod
    def _wait_all(self, timeout: float | None) -> None:
        """Wait until no job runs (at most ``timeout`` seconds; ``None``: no limit)."""

    @abc.abstractmethod
    def _timeout(self, seconds: float, exc: BaseException) -> AbstractContextManager[Any]:
        """A context raising ``exc`` in this green thread after ``seconds``."""

    # --- written once -------------------------------------------------------------------------------
    @classmethod
    def missing_patches(cls) -> list[str]:
        return [m for m in cls.required_patches if not cls.is_module_patched(m)]

    @classmethod
    def prepare_process(cls) -> None:
        if cls.missing_patches():
            cls.patch_all()

    def __init__(self, max_workers: int, **options: Any) -> None:
        missing = self.missing_patches()
        if missing:
            raise ConfigError(NOT_PATCHED.format(name=self.name, library=self.library or self.name, missing=", ".join(missing),
                                                 patch_lines=self.patch_lines))
        super().__init__(max_workers, **options)
        self._log = logging.getLogger(f"boostkernel.{self.name}")
        self._closed = False

    def submit(self, job: Job) -> None:
        if self._closed:
            raise RuntimeError("executor is shut down")
        self._spawn(job)

    def _run_job(self, job: Job) -> None:
        try:
            job.run()
        except Exception:  # noqa: BLE001 - one job must never take the pool down
            self._log.exception("job crashed")

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        self._closed = True
        if wait:
            self._wait_all(timeout)

    def call_with_timeout(self, fn: Callable[[], Any], timeout: float) -> Any:
        """Run ``fn`` in this green thread under the library's timeout.

        The timeout fires at the function's next cooperative point (I/O, sleep, lock wait). A pure-Python
        loop that never yields cannot be interrupted by a green-thread library; it is reported when it returns.
        """
        with self._timeout(timeout, TaskTimeout(f"task exceeded its {timeout}s timeout and was stopped")):
            return fn()
