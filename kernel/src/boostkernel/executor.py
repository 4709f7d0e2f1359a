"""The executor interface every concurrency plugin implements.

An executor runs *jobs*: a :class:`Job` knows how to run one message synchronously (``run``) and as a
coroutine (``run_async``). Thread-like executors call ``run``; the asyncio executor awaits ``run_async``
on its event loop. ``submit`` blocks when the executor is full: that is the back-pressure that stops the
consumer from fetching more than it can run.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Protocol


class Job(Protocol):
    @property
    def is_async(self) -> bool:
        """True when the task is an ``async def`` (executors that can should call ``run_async``)."""

    def run(self) -> None: ...

    def run_async(self) -> Awaitable[None]: ...


@dataclass(frozen=True)
class ExecutorCapabilities:
    timeout: bool = False
    """Can stop a running task after a timeout (``call_with_timeout``)."""
    cancel: bool = False
    """Can stop a running task on request (remote cancel)."""
    async_functions: bool = False
    """Runs ``async def`` tasks natively."""
    sync_functions: bool = True
    exclusive: bool = False
    """Needs the whole process (gevent/eventlet monkey-patching): cannot share it with other modes."""

    def as_dict(self) -> dict[str, bool]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Executor(abc.ABC):
    name: ClassVar[str] = "abstract"
    capabilities: ClassVar[ExecutorCapabilities] = ExecutorCapabilities()

    def __init__(self, max_workers: int, **options: Any) -> None:
        self.max_workers = max_workers
        self.options = options

    @abc.abstractmethod
    def submit(self, job: Job) -> None:
        """Start ``job``; block while ``max_workers`` jobs are running."""

    @property
    def idle(self) -> int:
        """How many more jobs could start now without blocking (a hint for fetch sizes)."""
        return self.max_workers

    def run_here(self, job: Job) -> bool:
        """Run ``job`` in the calling thread, counted against ``max_workers`` like a submitted job, if a slot is
        free now; ``False`` (nothing run) if none is, or if this mode cannot (the default).

        The consume loop calls it with a lone message on a broker declaring ``fetch_any_thread``, having handed
        fetching to its standby thread: the message starts without waking a pool thread."""
        return False

    @abc.abstractmethod
    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        """Stop accepting jobs; with ``wait``, let running jobs finish (at most ``timeout`` seconds)."""

    @classmethod
    def prepare_process(cls) -> None:
        """Make this process able to run the mode (gevent/eventlet monkey-patch here).

        ``boostkernel worker`` and each child of the process overlay call it before importing the user's
        module when a booster (or ``--concurrency``) selects this mode. Must be idempotent. Default: nothing.
        """

    def current_handle(self) -> Any:
        """A handle on the task running in the calling thread/greenlet, for :meth:`interrupt` (remote cancel).

        Called from inside a running task (e.g. by a cancel control's ``around``). ``None`` if unsupported.
        """
        return None

    def interrupt(self, handle: Any, exc: type[BaseException]) -> bool:
        """Raise ``exc`` inside the running task ``handle``; return ``False`` if this mode cannot."""
        return False

    def call_with_timeout(self, fn: Callable[[], Any], timeout: float) -> Any:
        """Run ``fn`` and stop it after ``timeout`` seconds, raising :class:`~boostkernel.errors.TaskTimeout`."""
        raise NotImplementedError(f"concurrency {self.name!r} cannot stop a running task")

    async def acall_with_timeout(self, fn: Callable[[], Awaitable[Any]], timeout: float) -> Any:
        import asyncio

        from .errors import TaskTimeout

        try:
            return await asyncio.wait_for(fn(), timeout)
        except asyncio.TimeoutError:
            raise TaskTimeout(f"task exceeded its {timeout}s timeout") from None
