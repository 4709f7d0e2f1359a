"""The broker interface every broker plugin implements.

A :class:`Broker` instance is bound to one queue. The interface is synchronous and small; it fits

* a **pulled list** (Redis, SQL): ``fetch`` atomically moves messages into an in-flight record;
* a **pushed channel** (AMQP): the plugin's connection thread buffers deliveries that ``fetch`` drains, and
  ``ack`` hands the delivery tag back to that thread;
* a **partitioned log** (Kafka): ``ack`` marks an offset finished and the plugin commits the highest
  contiguous finished offset per partition.

Reliability rules for every broker that declares ``ack=True`` (docs/reliability.md): fetching and
recording "in flight" is one atomic operation; the kernel acks only after the task finished; dead
consumers are found by heartbeats from a dedicated thread, never by a per-message visibility timeout;
in-flight records are keyed by message id; deliveries are counted and a message that killed its worker
``max_deliveries`` times goes to the dead-letter queue; ``close()`` returns unacked prefetched messages.

**Running versus prefetched.** A fetched message is *prefetched* until the kernel calls
:meth:`Broker.started` for it, right before it runs the task; from then until it is settled it is
*running*. When a consumer dies, the broker returns all its unsettled messages, but charges a crash only
to the running ones: a message is dead-lettered (reason naming the crash loop) when its consumer died
while running it ``max_deliveries`` times; prefetched bystanders go back uncharged. The crash-loop limit
is the broker's job (it alone sees the crash); the kernel only reports ``started``.
"""

from __future__ import annotations

import abc
import functools
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from .errors import ConfigError
from .logs import mask_url, queue_logger
from .params import BoostParams

if TYPE_CHECKING:
    import logging

T = TypeVar("T")
_CLOSING = threading.Lock()


def consumer_window(params: BoostParams | None, minimum: int, unbound: int = 1) -> int:
    """The default number of messages a consumer holds at most (taken from the broker and not settled):
    its window, ``basic_qos`` prefetch count or MQTT ``Receive Maximum``, for a broker whose
    ``broker_options`` set none. The booster's explicit ``prefetch`` if given (at least 1), else its
    running + prefetched tasks (``workers + effective_prefetch``) and at least ``minimum``: the window must
    cover the running tasks, the prefetched ones and the acks still on their way back, or the consumer
    waits a round trip for each small batch. A broker made without booster parameters (direct use, the
    broker contract suite) gets ``unbound``; 1 (the default) means it takes exactly what ``fetch`` asks
    for, so ``count()`` and ``purge()`` see every message it did not return."""
    if params is None:
        return unbound
    if params.prefetch is not None:
        return max(1, int(params.prefetch))
    return max(minimum, int(params.workers + params.effective_prefetch))


def name_option(options: Mapping[str, Any], key: str, default: str, pattern: re.Pattern[str], broker: str,
                rule: str) -> str:
    """A name on the server (topic, channel, consumer group) read from ``broker_options[key]``, ``default``
    (often the queue name) when not set, and checked: if ``pattern`` does not match it, ``ConfigError``
    says ``rule`` (what the server accepts) and the fix (another queue name, or the option ``key``)."""
    name = str(options.get(key, default))
    if not pattern.match(name):
        raise ConfigError(f"{broker} {key} name {name!r} is not valid: {rule}; choose another queue name or set "
                          f"broker_options {key}=...")
    return name


def lease_options(options: Mapping[str, Any], lease: str, default: float, renewal: str,
                  minimum_note: str = "") -> tuple[float, float]:
    """A server-side lease and its renewal, read from ``broker_options`` and checked: ``options[lease]``,
    the seconds the server keeps a delivered message from other consumers (``default``; at least 1 s,
    ``minimum_note`` says whose minimum), and ``options[renewal]``, how often the consumer renews the lease
    of a message it holds (a third of the lease by default; more than 0 and under half of the lease, or a
    live long task loses its message). Returns ``(lease, renewal)``; a bad value raises ``ConfigError``
    naming the option."""
    seconds = float(options.get(lease, default))
    if seconds < 1:
        note = f" ({minimum_note})" if minimum_note else ""
        raise ConfigError(f"broker_options {lease}={seconds!r}: must be >= 1 second{note}")
    every = float(options.get(renewal, seconds / 3))
    if not 0 < every < seconds / 2:
        raise ConfigError(f"broker_options {renewal}={every!r}: must be > 0 and under half of {lease} "
                          f"({seconds}), or a live long task loses its message")
    return seconds, every


class Lazy(Generic[T]):
    """A value made by ``make`` on the first :meth:`get`, once even when threads race for it (a client, a
    producer, a booster's broker): the double-checked lock written once."""

    __slots__ = ("_make", "_lock", "value")

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self.value: T | None = None
        """The value if it was made (and not :meth:`take`-n since), else ``None``."""

    def get(self) -> T:
        """The value, made now if it is not yet."""
        value = self.value
        if value is None:
            with self._lock:
                value = self.value
                if value is None:
                    value = self.value = self._make()
        return value

    def take(self) -> T | None:
        """Forget the value and return it (to close it); the next :meth:`get` makes a new one."""
        with self._lock:
            value, self.value = self.value, None
        return value


def poll_claims(claim: Callable[[], list[T]], timeout: float, wake: threading.Condition, closed: threading.Event,
                *, longest: float = 0.1, wait_cap: Callable[[], float] | None = None,
                woken: Callable[[], None] | None = None) -> list[T]:
    """The ``fetch`` of a broker that claims from local storage (a file, a folder): call ``claim()`` until
    it returns something, waiting between tries on ``wake`` (notified by a local publish) for 2 ms, then
    twice as long each time up to ``longest`` seconds, and never past ``timeout`` or ``wait_cap()``
    seconds. Returns ``[]`` at the timeout or once ``closed`` is set; ``woken()`` runs after each wait."""
    deadline = time.monotonic() + timeout
    pause = 0.002
    while True:
        got = claim()
        if got:
            return got
        left = deadline - time.monotonic()
        if left <= 0 or closed.is_set():
            return []
        wait = min(pause, left) if wait_cap is None else min(pause, left, wait_cap())
        with wake:
            wake.wait(wait)
        if woken is not None:
            woken()
        pause = min(pause * 2, longest)


@dataclass(frozen=True)
class BrokerCapabilities:
    """What a broker guarantees. The contract suite tests exactly what is declared."""

    ack: bool = True
    """At-least-once: a message fetched and not acked is delivered again after a crash."""
    requeue: bool = True
    """``nack(requeue=True)`` puts the message back."""
    priority: bool = False
    """Higher ``priority`` is fetched first."""
    delay: bool = False
    """Messages with a future ``eta`` are held by the broker, not by the worker."""
    durable: bool = False
    """Messages survive a restart of the broker / of the process hosting it."""
    count: bool = True
    purge: bool = True
    fanout: bool = False
    """Every consumer receives every message (pub/sub)."""
    batch_publish: bool = False
    """``publish_many`` is one round trip, not a loop."""
    dead_letter: bool = True
    """The broker keeps a dead-letter queue that ``dead_letters()`` lists and ``replay_dead_letters()`` replays."""
    cross_process: bool = True
    """Producers and consumers may live in different processes."""
    needs_own_worker: bool = False
    """A whole framework (celery, rq …) runs the tasks; the kernel's consume loop is not used."""
    fetch_any_thread: bool = False
    """``fetch`` may be called from any thread (one call at a time). The consume loop then starts a lone message
    on the thread that fetched it, while a standby thread takes over fetching (``threads`` mode: an idle
    worker saves the hand-off to a sleeping pool thread, about 0.2 ms)."""
    recovery_seconds: float = 15.0
    """With ``ack``: at default settings, the most seconds from a consumer's death (kill -9) until its
    unsettled messages can be fetched again. The contract suite checks it."""

    def as_dict(self) -> dict[str, bool | float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(slots=True)
class Outgoing:
    """A message ready to publish: encoded body plus what the broker needs to route it."""

    id: str
    body: bytes
    priority: int = 0
    eta: float | None = None
    """Unix time before which the message must not be delivered (``None``: now)."""


@dataclass(slots=True)
class Delivery:
    """A fetched message. ``tag`` is the broker's own handle (row id, delivery tag, offset …)."""

    id: str
    body: bytes
    tag: Any = None
    delivery_count: int = 1
    """1 on the first delivery; more means it was redelivered (duplicates are possible)."""
    extra: dict[str, Any] = field(default_factory=dict)
    crashes: int = 0
    """How often a worker died while running this message (brokers that count crashes set it). The kernel
    runs a message with ``crashes > 0`` alone in its process, so that if it kills the worker again it is
    the only message charged: a poison message reaches ``max_deliveries`` by itself, and messages that
    happened to run beside it the first time are not dead-lettered with it."""


@dataclass(slots=True)
class DeadLetterRecord:
    id: str
    body: bytes
    reason: str
    failed_at: float
    tag: Any = None


class Broker(abc.ABC):
    """Base class of broker plugins. Subclasses set ``name``, ``capabilities`` and implement the methods.

    Thread-safety: ``publish*``, ``ack``, ``nack`` and ``dead_letter`` may be called from any thread;
    ``fetch`` is called from one consumer thread at a time.

    **Framework brokers** (celery, dramatiq, huey, rq: ``capabilities.needs_own_worker=True``) do not expose
    fetch/ack; the framework's own worker runs the tasks. They subclass
    :class:`boostkernel.framework.FrameworkBroker` and provide these class methods, which the kernel calls:

    * ``setup_booster(booster)`` - at decoration time (``@boost``): validate the parameters (a parameter
      the framework cannot honour raises ``ConfigError`` saying so), register the task with the framework
      under the queue's name. ``framework_params`` lists the control options mapped onto the
      framework's own options; the kernel loads no control plugin for them.
    * ``start_worker(boosters) -> handle`` - ``Booster.consume()``: start the framework's worker for these
      boosters in the background of this process and return at once. The handle has ``running``,
      ``stop(timeout)`` (``Booster.stop()`` calls it) and is registered so SIGTERM/SIGINT stop it and
      ``wait_for_consumers()`` waits for it.
    * ``run_worker(boosters)`` - ``boostkernel worker``: the same for every booster of this broker class in
      the worker (one call per class); returns at once, the kernel waits.
    * ``publish(outgoing)`` - as for every broker, with the encoded envelope; ``FrameworkBroker`` decodes
      it and sends args/kwargs through the framework's own API with the envelope's id as the task id.
    """

    name: ClassVar[str] = "abstract"
    capabilities: ClassVar[BrokerCapabilities] = BrokerCapabilities()
    default_url: ClassVar[str | None] = None
    #: Name of the store plugin used for results/coordination when the booster names none.
    default_store: ClassVar[str] = "sqlite"
    #: ``True``: ``@boost`` builds one instance at decoration time, so the URL and option checks in
    #: ``__init__`` fail there with their fix rather than at the first push. Only for an ``__init__``
    #: that does not connect.
    check_at_decoration: ClassVar[bool] = False

    def __init__(self, queue: str, url: str | None = None, params: BoostParams | None = None,
                 **options: Any) -> None:
        self.queue = queue
        self.url = url or self.default_url
        self.params = params
        self.options = {**(params.broker_options if params else {}), **options}

    def checked_url(self, schemes: tuple[str, ...], form: str) -> str:
        """:attr:`url`, refused with a :class:`~boostkernel.errors.ConfigError` unless its scheme is one of
        ``schemes`` (``("amqp", "amqps")``); ``form`` names what is wanted in the message
        (``"an amqp:// or amqps:// URL"``)."""
        url = self.url
        if url is None or url.partition("://")[0] not in schemes or "://" not in url:
            raise ConfigError(f"{self.name} broker needs {form}, got {mask_url(url)!r}")
        return url

    @functools.cached_property
    def log(self) -> logging.Logger:
        """The queue's logger (:func:`boostkernel.logs.queue_logger`), made on first use."""
        return queue_logger(self.queue)

    @functools.cached_property
    def max_crashes(self) -> int:
        """:meth:`crash_limit`, read on first use and kept: a broker that counts crashes compares with this
        (never calling ``crash_limit`` per message)."""
        return self.crash_limit()

    def crash_limit(self) -> int:
        """``max_deliveries``: how many deaths of a consumer running a message dead-letter it (``crash-loop``).

        The booster's ``params.max_deliveries``; for a broker built without parameters (a tool, a test),
        the ``max_deliveries`` broker option, default 3. A broker that counts crashes reads it once,
        through :attr:`max_crashes`, never per message."""
        if self.params is not None:
            return int(self.params.max_deliveries)
        return int(self.options.get("max_deliveries", 3))

    @staticmethod
    def stop_background(closed: threading.Event, threads: threading.Thread | Iterable[threading.Thread] | None = None,
                        timeout: float = 0.0, wake: threading.Event | threading.Condition | None = None) -> bool:
        """The start of a consumer's ``close()``: stop its background threads (heartbeat, acks, reaper …).

        Returns ``False`` if ``closed`` was already set (``close`` ran before: nothing more to do); otherwise
        sets it, wakes ``wake`` (an event it sets, or a condition it notifies: what the threads may be waiting
        on), waits up to ``timeout`` seconds for each of ``threads`` (``None``: none was started; never the
        calling thread itself) and returns ``True``: the caller goes on to give back what the consumer holds
        and to close its connections."""
        with _CLOSING:  # two threads closing at once: one of them closes
            if closed.is_set():
                return False
            closed.set()
        if isinstance(wake, threading.Event):
            wake.set()
        elif wake is not None:
            with wake:
                wake.notify_all()
        for t in [threads] if isinstance(threads, threading.Thread) else threads or ():
            if t is not threading.current_thread():
                t.join(timeout)
        return True

    @staticmethod
    def take_buffered(buffer: deque[T], ready: threading.Condition, max_messages: int, timeout: float) -> list[T]:
        """The ``fetch`` of a broker whose client pushes deliveries into a local ``buffer`` (notifying
        ``ready``): up to ``max_messages`` of them, waiting up to ``timeout`` seconds for the first one;
        ``[]`` if none came."""
        with ready:
            if not buffer:
                ready.wait(timeout)
            n = min(max_messages, len(buffer))
            pop = buffer.popleft
            return [pop() for _ in range(n)]

    @staticmethod
    def same_generation(delivery: Delivery, generation: int, log: logging.Logger, link: str = "connection") -> bool:
        """For a broker whose delivery tags are ``(generation, ...)``, the generation counting its reconnections:
        whether ``delivery`` came over the live ``link`` (``generation``). If not, its settle must be dropped
        (that ``link`` is closed and the server redelivers the message): says so on ``log`` at debug level."""
        if delivery.tag[0] == generation:
            return True
        log.debug("dropping settle of message %s from a closed %s (it will be redelivered)", delivery.id, link)
        return False

    # --- publishing ---------------------------------------------------------------------------
    @abc.abstractmethod
    def publish(self, message: Outgoing) -> None:
        """Store one message durably (per the broker's guarantee) before returning."""

    def publish_many(self, messages: Sequence[Outgoing]) -> None:
        """Publish several messages; brokers with ``batch_publish`` do it in one round trip."""
        for m in messages:
            self.publish(m)

    # --- consuming ----------------------------------------------------------------------------
    @abc.abstractmethod
    def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        """Return up to ``max_messages`` deliveries, waiting at most ``timeout`` seconds for the first."""

    @abc.abstractmethod
    def ack(self, delivery: Delivery) -> None:
        """The task finished (success, or failure handled): forget the message."""

    def ack_many(self, deliveries: Iterable[Delivery]) -> None:
        for d in deliveries:
            self.ack(d)

    def started(self, delivery: Delivery) -> None:
        """The kernel is about to run this delivery's task (it was only prefetched until now).

        Called from the executor's thread, once per delivery, only if the broker overrides it. A broker
        that declares ``ack`` records it so that a consumer's death charges a crash to the messages it was
        running and not to those it had only prefetched (see the module docstring). Must be cheap: it runs
        on the per-message path, so a local write that survives ``kill -9``
        (:class:`boostkernel.journal.RunningJournal`, one ``write(2)``), never a broker round trip.
        """

    @abc.abstractmethod
    def nack(self, delivery: Delivery, requeue: bool = True, delay: float = 0.0) -> None:
        """Give the message back (``requeue``, after ``delay`` seconds where supported) or drop it."""

    @abc.abstractmethod
    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Move the message to the dead-letter queue with ``reason``, atomically with its ack."""

    def dead_letters(self, limit: int = 100) -> list[DeadLetterRecord]:
        """The oldest ``limit`` dead-lettered messages of this queue."""
        raise NotImplementedError(f"broker {self.name!r} cannot list its dead-letter queue")

    def replay_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        """Publish dead-lettered messages (all, or those with ``ids``) back to the queue; return how many."""
        raise NotImplementedError(f"broker {self.name!r} cannot replay its dead-letter queue")

    def purge_dead_letters(self) -> int:
        raise NotImplementedError(f"broker {self.name!r} cannot purge its dead-letter queue")

    # --- inspection and lifecycle ---------------------------------------------------------------
    def count(self) -> int:
        """Messages waiting (ready or delayed), not counting in-flight ones: a message is *in flight* from
        the moment the server handed it to a consumer (fetched, or sitting in a consumer's
        :meth:`buffered` prefetch buffer) until it is settled or returned by that consumer's close or death."""
        raise NotImplementedError(f"broker {self.name!r} cannot count messages")

    def purge(self) -> int:
        """Delete every waiting message; return how many were deleted. In-flight messages (see :meth:`count`,
        including those in any consumer's :meth:`buffered` prefetch buffer) are left alone."""
        raise NotImplementedError(f"broker {self.name!r} cannot purge")

    def buffered(self) -> int:
        """Messages in flight to this broker object that :meth:`fetch` has not returned yet: its client-side
        prefetch buffer (the one :meth:`take_buffered` drains: AMQP ``basic_qos``, a STOMP subscription's
        window, jobs reserved ahead of the kernel's asking). The server holds them as unacked, owned by this
        live consumer, so :meth:`count` and :meth:`purge` treat them as in flight (not counted, not purged),
        and :meth:`close` or the consumer's death returns them to the queue. The contract checks
        ``count() == published - fetched - buffered()`` and the same for ``purge()``.

        Default 0: a broker that takes from the server exactly what ``fetch`` returns, or whose buffered
        records the server still counts as waiting (a Kafka consumer's polled records: ``count`` and ``purge``
        include them). A snapshot, callable from any thread; a delivery still on the wire is not in it yet.
        """
        return 0

    def close(self) -> None:
        """Stop heartbeats, return unacked deliveries to the queue, release connections. Idempotent."""

    def describe(self) -> dict[str, Any]:
        """Facts for logs and the dashboard. URLs must be masked (``mask_url``)."""
        from .logs import mask_url

        return {"broker": self.name, "queue": self.queue, "url": mask_url(self.url)}

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
