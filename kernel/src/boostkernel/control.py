"""Controls: the features switched on by parameters (rate limit, retries, timeout, dedup …).

A control plugin registers a :class:`Control` subclass with its options class. When a booster starts, the
kernel instantiates the controls whose options differ from their defaults, sorts them by ``order`` and composes one plain chain from the methods each control
*overrides*. The per-message path then calls that chain directly: no hook dispatch and no cost for
controls that are off or for hook points a control does not use.

Hook points, in the order a message meets them:

1. ``on_publish(envelope)`` - in the publisher, before encoding (validation, dedup at publish …).
2. ``gate()`` - in the consumer's dispatch loop before each message is handed to the pool; may block
   (rate limit, pause, time window, quota, circuit breaker).
3. ``before(ctx)`` - in the worker, before the function; may raise a signal (``Skip`` for dedup, expiry,
   revoke; ``DeadLetter``; ``Requeue``).
4. ``around(ctx, call_next)`` / ``around_async`` - wrap the call (retry, timeout, cancel). The first
   control in order is the outermost wrapper.

A control plugin declares its ``@boost`` options as a dataclass (:mod:`boostkernel.options`) and
registers it with ``registry.add_control(name, "module:Class", options=..., order=...)``; the control
reads them as ``self.options``. Booster-level methods (``pause()``, ``revoke()`` …) are added with
``registry.add_booster_method``.
5. ``after(ctx)`` - after the outcome is known (results, stats, dedup marking); ``ctx.exception`` is set
   on failure. Exceptions raised here are logged, never lost messages.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from .context import Outcome, TaskContext, current_task
from .message import Envelope

if TYPE_CHECKING:
    from .booster import Booster

__all__ = ["Control", "TaskContext", "Outcome", "current_task", "overrides", "count_per_seconds", "Repeating",
           "ORDER_DEFAULT", "ORDER_RESULTS"]

#: Order of a control that registers none. Each control plugin owns its order (docs/plugins.md lists them).
ORDER_DEFAULT = 500
#: Order of the kernel's result writer: late, so its record sees what the other controls decided.
ORDER_RESULTS = 900


class Control:
    """Base class of control plugins. Override only the hook points you need."""

    name: ClassVar[str] = "abstract"
    #: Not read by the kernel: a control runs in the order it registers (``registry.add_control(order=...)``),
    #: declared there once.
    order: ClassVar[int] = ORDER_DEFAULT
    #: Concurrency modes this control works with; ``None`` means all. Checked at decoration time.
    supported_concurrency: ClassVar[frozenset[str] | None] = None
    #: ``True`` if the control needs a store (results, global rate limit …).
    needs_store: ClassVar[bool] = False
    #: ``True`` if the control decides retries itself (the retry control). Without one, the kernel retries
    #: a task raising :class:`~boostkernel.Retry` at most ``DEFAULT_RETRY_LIMIT`` times.
    handles_retry: ClassVar[bool] = False
    #: Options that must be a positive number of seconds, checked at decoration time: name -> what the
    #: option does, ending the error message (may be ``""``), e.g. ``{"expires": "(older messages are dropped)"}``.
    positive_seconds: ClassVar[Mapping[str, str]] = {}
    #: ``(count, seconds)`` options (:func:`count_per_seconds`), checked at decoration time: name -> the
    #: expected form for the error message, e.g. ``{"quota": "(runs, period_seconds), e.g. (1000, 86400)"}``.
    count_per_seconds_options: ClassVar[Mapping[str, str]] = {}
    #: ``(capability, message)``: a field of ``ExecutorCapabilities`` the control needs (``"timeout"``,
    #: ``"cancel"``), checked at decoration time; ``message`` is the error when the concurrency mode lacks
    #: it, formatted with ``params=`` the booster's parameters (``"... concurrency={params.concurrency!r} ..."``).
    needs_executor: ClassVar[tuple[str, str] | None] = None
    #: Parameters that must be set (true) for this control to make sense, checked at decoration time:
    #: name -> the error when one is not, formatted with ``params=`` the booster's parameters.
    requires: ClassVar[Mapping[str, str]] = {}

    #: The consumer running this control (set by the consumer; ``None`` for publish-side instances).
    consumer: Any = None

    def __init__(self, booster: Booster[Any, Any]) -> None:
        self.booster = booster
        self.params = booster.params
        """The booster's :class:`~boostkernel.BoostParams` (``self.params.qps`` also reads any control option)."""
        self.options: Any = booster.params.controls.get(self.name)
        """This control's options (an instance of the dataclass it registered), or ``None``."""

    def sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` (for gates), waking early when the consumer stops. True if it is stopping."""
        c = self.consumer
        if c is None:
            time.sleep(max(0.0, seconds))
            return False
        return bool(c.wait_stopping(max(0.0, seconds)))

    @property
    def stopping(self) -> bool:
        """True once the consumer running this control is stopping."""
        return self.consumer is not None and bool(self.consumer.is_stopping())

    @classmethod
    def check(cls, booster: Booster[Any, Any]) -> None:
        """Validate at decoration time; raise :class:`~boostkernel.errors.ConfigError` saying how to fix.
        The base checks ``supported_concurrency``, ``requires``, ``needs_executor``, ``positive_seconds`` and
        ``count_per_seconds_options``; an override calls it first."""
        from .errors import ConfigError

        p = booster.params
        if cls.supported_concurrency is not None and p.concurrency not in cls.supported_concurrency:
            raise ConfigError(
                f"control {cls.name!r} cannot work with "
                f"concurrency={p.concurrency!r}; use one of {sorted(cls.supported_concurrency)}"
            )
        for option, message in cls.requires.items():
            if not getattr(p, option):
                raise ConfigError(message.format(params=p))
        if cls.needs_executor is not None:
            capability, message = cls.needs_executor
            executor = getattr(booster, "executor_class", None)
            if executor is not None and not getattr(executor.capabilities, capability):
                raise ConfigError(message.format(params=p))
        for option, why in cls.positive_seconds.items():
            v = getattr(p, option)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
                raise ConfigError(f"{option}={v!r} on queue {p.queue!r}: must be a positive number of seconds"
                                  f"{' ' + why if why else ''}")
        for option, expected in cls.count_per_seconds_options.items():
            count_per_seconds(getattr(p, option), option, expected)

    def start(self) -> None:
        """Called once when the booster starts consuming."""

    def stop(self) -> None:
        """Called once when the booster stops consuming."""

    def on_publish(self, envelope: Envelope) -> None:
        """Inspect or amend an outgoing message. Raise to refuse it."""

    def gate(self) -> None:
        """Block until the next message may be dispatched."""

    def before(self, ctx: TaskContext) -> None:
        """Run before the function; raise a signal to skip, requeue or dead-letter."""

    def around(self, ctx: TaskContext, call_next: Callable[[], Any]) -> Any:
        return call_next()

    async def around_async(self, ctx: TaskContext, call_next: Callable[[], Awaitable[Any]]) -> Any:
        return await call_next()

    def after(self, ctx: TaskContext) -> None:
        """Run after the outcome is known (``ctx.status`` is an :class:`Outcome`), before the message is
        settled. Setting ``ctx.status = Outcome.REQUEUED`` (with ``ctx.exception = Requeue(delay)``) here
        puts the message back on the queue instead: for work that must be done before the ack."""


def count_per_seconds(value: Any, option: str, expected: str) -> tuple[int, float]:
    """A ``(count, seconds)`` option such as ``quota=(1000, 86400)`` or ``circuit_breaker=(5, 30.0)`` as
    ``(int, float)``: a count >= 1 and a positive number of seconds. Anything else raises
    :class:`~boostkernel.errors.ConfigError` saying ``{option}={value!r}: expected {expected}``."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        n, seconds = value
        if isinstance(n, int) and not isinstance(n, bool) and n >= 1 and isinstance(seconds, (int, float)) \
                and seconds > 0:
            return int(n), float(seconds)
    from .errors import ConfigError

    raise ConfigError(f"{option}={value!r}: expected {expected}")


class Repeating:
    """A daemon thread calling ``fn`` every ``interval`` seconds from :meth:`start` until :meth:`stop`: the
    reporter of a control (stats, monitor). ``first_now``: the first call at once, else after one interval.
    An exception of ``fn`` does not end the thread: ``on_error()`` runs in its ``except`` block (to log it)."""

    def __init__(self, fn: Callable[[], object], interval: float, name: str, on_error: Callable[[], None], *,
                 first_now: bool = False) -> None:
        self.fn, self.interval, self.name, self.on_error, self.first_now = fn, interval, name, on_error, first_now
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True, name=self.name)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and wait for it (at most ``timeout`` seconds)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        if not self.first_now and self._stop.wait(self.interval):
            return
        while True:
            try:
                self.fn()
            except Exception:  # noqa: BLE001 - a reporter must never stop consumption
                self.on_error()
            if self._stop.wait(self.interval):
                return


def overrides(control: Control, method: str) -> bool:
    """True if ``control``'s class overrides ``method`` of :class:`Control`."""
    return getattr(type(control), method) is not getattr(Control, method)
