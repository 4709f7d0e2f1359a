"""One error hierarchy for everything boostkernel raises, plus the signals a task may raise.

Everything derives from :class:`BoostError`, so ``except BoostError`` catches any failure of the
framework itself. The *signals* (:class:`Retry`, :class:`Requeue`, :class:`DeadLetter`) are raised by
user code inside a task to steer what happens to the message; they are not errors of the framework.
"""

from __future__ import annotations

from typing import Any


class BoostError(Exception):
    """Base class of every error boostkernel raises."""


class ConfigError(BoostError, ValueError):
    """A booster or plugin is misconfigured. Raised at decoration time; the message says how to fix it."""


class PluginNotInstalled(ConfigError):
    """A parameter names a plugin that is not installed. The message carries the install command."""

    def __init__(self, kind: str, name: str, known: list[str] | None = None, hint: str | None = None):
        self.kind, self.name = kind, name
        msg = f"no {kind} plugin named {name!r} is installed."
        if hint:
            msg += f" {hint}"
        else:
            msg += f' Install it with: pip install "boostkernel[{name}]"'
        if known:
            msg += f" (installed {kind}s: {', '.join(sorted(known))})"
        super().__init__(msg)


class PluginLoadError(BoostError):
    """A plugin was found but failed to import or register. Other plugins keep working."""


class BrokerUnavailable(BoostError, ConnectionError):
    """The broker could not be reached (after the broker's own retries)."""


class MessageRejected(BoostError):
    """A message cannot be run: it is sent to the dead-letter queue with ``reason``."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class MessageDecodeError(MessageRejected):
    """The bytes on the wire are not a valid boostkernel message (or plain JSON object)."""


class ResultsNotEnabled(BoostError):
    """``AsyncResult.get()`` was called for a booster that keeps no results."""


class ResultTimeout(BoostError, TimeoutError):
    """No result arrived within the timeout given to ``AsyncResult.get()``."""


class TaskFailed(BoostError):
    """The remote task raised. ``exc_type`` and ``traceback`` are strings: nothing is imported or unpickled."""

    def __init__(self, task_id: str, exc_type: str, message: str, traceback: str | None = None):
        self.task_id, self.exc_type, self.remote_message, self.traceback = task_id, exc_type, message, traceback
        super().__init__(f"task {task_id} failed: {exc_type}: {message}")


class TaskTimeout(BoostError, TimeoutError):
    """The task ran longer than its ``timeout`` and was stopped."""


class TaskCancelled(BoostError):
    """The task was cancelled (revoked before it ran, or stopped while running)."""


# --- signals raised by user code -------------------------------------------------------------


class Signal(Exception):  # noqa: N818 - these are control-flow signals, not errors
    """Base of the control-flow signals a task may raise."""


class Retry(Signal):
    """Run the task again after ``delay`` seconds (counts as an attempt)."""

    def __init__(self, delay: float = 0.0, reason: str = "") -> None:
        self.delay, self.reason = delay, reason
        super().__init__(reason or f"retry in {delay}s")


class Requeue(Signal):
    """Put the message back on the queue without counting an attempt (e.g. a resource is busy)."""

    def __init__(self, delay: float = 0.0, reason: str = "") -> None:
        self.delay, self.reason = delay, reason
        super().__init__(reason or "requeue")


class DeadLetter(Signal):
    """Send the message to the dead-letter queue now, with ``reason``."""

    def __init__(self, reason: str = "dead-lettered by the task") -> None:
        self.reason = reason
        super().__init__(reason)


class Skip(Signal):
    """Acknowledge the message without running the task (used by controls: dedup, expiry, revoke)."""

    def __init__(self, reason: str, status: str = "skipped", detail: Any = None) -> None:
        self.reason, self.status, self.detail = reason, status, detail
        super().__init__(reason)


__all__ = [
    "BoostError", "ConfigError", "PluginNotInstalled", "PluginLoadError", "BrokerUnavailable",
    "MessageRejected", "MessageDecodeError", "ResultsNotEnabled", "ResultTimeout", "TaskFailed",
    "TaskTimeout", "TaskCancelled", "Signal", "Retry", "Requeue", "DeadLetter", "Skip",
]
