"""The context of the task being run (:class:`TaskContext`), its outcome (:class:`Outcome`) and
:func:`current_task`. Imports nothing of the rest of the kernel but the message type."""

from __future__ import annotations

import enum
import os
import socket
import time
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .broker import Delivery
    from .message import Envelope

_HOST = socket.gethostname()


class Outcome(str, enum.Enum):
    """What happened to one message. A ``str`` enum: ``Outcome.SUCCESS == "success"``, and it is written
    to result records and JSON as its value."""

    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"
    """The function raised and no retry is left: dead-lettered with the reason."""
    RETRY = "retry"
    """``Retry`` was raised: the message is published again with ``attempt + 1``."""
    REQUEUED = "requeued"
    DEAD = "dead"
    SKIPPED = "skipped"
    EXPIRED = "expired"
    REVOKED = "revoked"
    DUPLICATE = "duplicate"

    def __str__(self) -> str:
        return self.value

    @property
    def acked(self) -> bool:
        """The message is acknowledged (done, or deliberately not run)."""
        return self in _ACKED  # a tuple of members: identity checks (Enum.__hash__ is Python code)

    @property
    def final(self) -> bool:
        """The task will not run again."""
        return self not in (Outcome.RUNNING, Outcome.RETRY, Outcome.REQUEUED)


_ACKED = (Outcome.SUCCESS, Outcome.DUPLICATE, Outcome.SKIPPED, Outcome.EXPIRED, Outcome.REVOKED)
_RUNNING = Outcome.RUNNING


def outcome_of(status: str) -> Outcome:
    """The :class:`Outcome` named ``status`` (``Skip(status=...)`` from a control); unknown names are SKIPPED."""
    try:
        return Outcome(status)
    except ValueError:
        return Outcome.SKIPPED


class TaskContext:
    """Everything about the message being run. Available to controls and, via ``current_task()``, to the task."""

    __slots__ = ("envelope", "delivery", "booster", "started_at", "finished_at", "result", "exception",
                 "status", "worker_id", "state")

    def __init__(self, envelope: Envelope, delivery: Delivery | None, booster: Any, worker_id: str) -> None:
        self.envelope = envelope
        self.delivery = delivery
        self.booster = booster
        """The :class:`~boostkernel.Booster` running the task."""
        self.worker_id = worker_id
        self.started_at = time.time()
        self.finished_at: float | None = None
        self.result: Any = None
        self.exception: BaseException | None = None
        self.status: Outcome = _RUNNING
        self.state: dict[str, Any] = {}
        """Scratch space controls may share within one message."""

    @property
    def task_id(self) -> str:
        return self.envelope.id

    @property
    def attempt(self) -> int:
        return self.envelope.attempt

    @property
    def queue(self) -> str:
        return self.envelope.queue

    def __repr__(self) -> str:
        return f"TaskContext(task_id={self.task_id!r}, queue={self.queue!r}, status={self.status.value!r})"


_current: ContextVar[TaskContext | None] = ContextVar("boostkernel_current_task", default=None)


def current_task() -> TaskContext | None:
    """The context of the task running in this thread or coroutine (``None`` outside a task)."""
    return _current.get()


def set_current(ctx: TaskContext | None) -> Any:
    """Make ``ctx`` the current task (framework brokers); returns a token for :func:`reset_current`."""
    return _current.set(ctx)


def reset_current(token: Any) -> None:
    _current.reset(token)


def worker_id() -> str:
    """``host:pid`` of this worker process."""
    return f"{_HOST}:{os.getpid()}"
