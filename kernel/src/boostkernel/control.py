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

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar

from .context import Outcome, TaskContext, current_task
from .message import Envelope

if TYPE_CHECKING:
    from .booster import Booster

__all__ = ["Control", "TaskContext", "Outcome", "current_task", "overrides", "ORDER_DEFAULT", "ORDER_RESULTS"]

#: Order of a control that registers none. Each control plugin owns its order (docs/plugins.md lists them).
ORDER_DEFAULT = 500
#: Order of the kernel's result writer: late, so its record sees what the other controls decided.
ORDER_RESULTS = 900


class Control:
    """Base class of control plugins. Override only the hook points you need."""

    name: ClassVar[str] = "abstract"
    order: ClassVar[int] = ORDER_DEFAULT
    #: Concurrency modes this control works with; ``None`` means all. Checked at decoration time.
    supported_concurrency: ClassVar[frozenset[str] | None] = None
    #: ``True`` if the control needs a store (results, global rate limit …).
    needs_store: ClassVar[bool] = False
    #: ``True`` if the control decides retries itself (the retry control). Without one, the kernel retries
    #: a task raising :class:`~boostkernel.Retry` at most ``DEFAULT_RETRY_LIMIT`` times.
    handles_retry: ClassVar[bool] = False

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
        """Validate at decoration time; raise :class:`~boostkernel.errors.ConfigError` saying how to fix."""
        if cls.supported_concurrency is not None and booster.params.concurrency not in cls.supported_concurrency:
            from .errors import ConfigError

            raise ConfigError(
                f"control {cls.name!r} cannot work with "
                f"concurrency={booster.params.concurrency!r}; use one of {sorted(cls.supported_concurrency)}"
            )

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


def overrides(control: Control, method: str) -> bool:
    """True if ``control``'s class overrides ``method`` of :class:`Control`."""
    return getattr(type(control), method) is not getattr(Control, method)
