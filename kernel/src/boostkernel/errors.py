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


def install_command(extra: str) -> str:
    return f'pip install "boostkernel[{extra}]"'


def suggest(kind: str, name: str, installed: list[str] | None = None) -> str:
    """The fix for a ``kind`` name that is not installed: its install command when a plugin of the project
    provides it, else "did you mean" the closest installed or installable name. Names only extras that exist
    (the catalog is generated from the plugins by scripts/sync_plugins.py)."""
    import difflib

    from ._catalog import NAMES

    installable = NAMES.get(kind, {})
    if name in installable:
        return f"Install it with: {install_command(installable[name])}"
    candidates = sorted(set(installed or ()) | set(installable))
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in candidates}
        close = [lowered[name.lower()]] if name.lower() in lowered else []
    if close:
        best = close[0]
        if best in (installed or ()):
            return f"Did you mean {best!r}?"
        return f"Did you mean {best!r}? (install it with: {install_command(installable[best])})"
    return "It is not a plugin of this project: check the name, or install the third-party plugin that provides it."


class PluginNotInstalled(ConfigError):
    """A parameter names a plugin that is not installed. The message carries the fix: the install command of
    the extra that provides it, or the closest valid name ("did you mean")."""

    def __init__(self, kind: str, name: str, known: list[str] | None = None, hint: str | None = None):
        self.kind, self.name = kind, name
        label = "concurrency" if kind == "executor" else kind
        msg = f"no {label} plugin named {name!r} is installed. {hint or suggest(kind, name, known)}"
        if known:
            msg += f" (installed {label} plugins: {', '.join(sorted(known))})"
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
