"""Controls: the features switched on by parameters (rate limit, retries, timeout, dedup …).

A control plugin registers a :class:`Control` subclass with the ``params`` (``BoostParams`` field names)
that switch it on. When a booster starts, the kernel instantiates the controls whose parameters differ
from their defaults, sorts them by ``order`` and composes one plain chain from the methods each control
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
5. ``after(ctx)`` - after the outcome is known (results, stats, dedup marking); ``ctx.exception`` is set
   on failure. Exceptions raised here are logged, never lost messages.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar

from .message import Envelope

if TYPE_CHECKING:
    from .booster import Booster
    from .broker import Delivery
    from .consumer import Consumer

#: Documented default orders. Lower runs first (and wraps outermost in ``around``).
ORDER_EXPIRY = 100
ORDER_REVOKE = 150
ORDER_DEDUP = 200
ORDER_PAUSE = 240
ORDER_WINDOW = 250
ORDER_RATE = 260
ORDER_QUOTA = 270
ORDER_CIRCUIT = 280
ORDER_RETRY = 300
ORDER_TIMEOUT = 400
ORDER_CANCEL = 450
ORDER_DEFAULT = 500
ORDER_RESULTS = 900
ORDER_STATS = 950


def pause_key(queue: str) -> str:
    """Store key of a queue's pause flag (set by ``Booster.pause()``, read by the pause control)."""
    return f"bk:paused:{queue}"


def revoke_key(queue: str, task_id: str) -> str:
    """Store key marking ``task_id`` of ``queue`` as revoked (``Booster.revoke()``, the cancel control)."""
    return f"bk:revoked:{queue}:{task_id}"


def revoke_generation_key(queue: str) -> str:
    """Store counter bumped at every revoke of ``queue``, so watchers poll one key, not one per task."""
    return f"bk:revoked-gen:{queue}"


class TaskContext:
    """Everything about the message being run. Available to controls and, via ``current_task()``, to the task."""

    __slots__ = ("envelope", "delivery", "booster", "started_at", "finished_at", "result", "exception",
                 "status", "worker_id", "state")

    def __init__(self, envelope: Envelope, delivery: Delivery | None, booster: Booster[Any, Any], worker_id: str) -> None:
        self.envelope = envelope
        self.delivery = delivery
        self.booster = booster
        self.worker_id = worker_id
        self.started_at = time.time()
        self.finished_at: float | None = None
        self.result: Any = None
        self.exception: BaseException | None = None
        self.status = "running"
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
        return f"TaskContext(task_id={self.task_id!r}, queue={self.queue!r}, status={self.status!r})"


class Control:
    """Base class of control plugins. Override only the hook points you need."""

    name: ClassVar[str] = "abstract"
    order: ClassVar[int] = ORDER_DEFAULT
    #: ``BoostParams`` fields that switch this control on when they differ from their defaults.
    params: ClassVar[tuple[str, ...]] = ()
    #: Concurrency modes this control works with; ``None`` means all. Checked at decoration time.
    supported_concurrency: ClassVar[frozenset[str] | None] = None
    #: ``True`` if the control needs a store (results, global rate limit …).
    needs_store: ClassVar[bool] = False

    #: The consumer running this control (set by the consumer; ``None`` for publish-side instances).
    consumer: Consumer | None = None

    def __init__(self, booster: Booster[Any, Any]) -> None:
        self.booster = booster
        # On an instance, ``params`` is the booster's BoostParams; on the class, the switching field names.
        self.params = booster.params  # type: ignore[misc,assignment]

    def sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` (for gates), waking early when the consumer stops. True if it is stopping."""
        c = self.consumer
        if c is None:
            time.sleep(max(0.0, seconds))
            return False
        return c._stop.wait(max(0.0, seconds))

    @classmethod
    def check(cls, booster: Booster[Any, Any]) -> None:
        """Validate at decoration time; raise :class:`~boostkernel.errors.ConfigError` saying how to fix."""
        if cls.supported_concurrency is not None and booster.params.concurrency not in cls.supported_concurrency:
            from .errors import ConfigError

            raise ConfigError(
                f"control {cls.name!r} (set by {', '.join(cls.params)}) cannot work with "
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
        """Run after the outcome is known (``ctx.status`` is ``success``, ``failure`` or a signal's)."""


HOOK_POINTS = ("on_publish", "gate", "before", "around", "around_async", "after", "start", "stop")


def overrides(control: Control, method: str) -> bool:
    """True if ``control``'s class overrides ``method`` of :class:`Control`."""
    return getattr(type(control), method) is not getattr(Control, method)
