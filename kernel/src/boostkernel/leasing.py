"""The shared skeleton of brokers that keep messages in a database and lease them to consumers.

The postgres, sql and mongodb brokers store each message as a row (or document) with an ``owner``: a
claim sets it to the consumer, an ack deletes the row. A consumer proves it is alive by a heartbeat; a
reaper on every live consumer gives the rows of silent consumers back, charging a crash to the ones that
were running, and dead-letters a message whose workers died ``max_deliveries`` times (``crash-loop``).
:class:`LeasedBroker` holds everything that does not depend on the database:

* the lease settings (``heartbeat_interval``, ``dead_after``, ``reap_interval``, ``ack_flush_interval``,
  ``idle_poll``, ``publish_timeout``, ``max_deliveries``), read from the broker options and checked;
* ``fetch``: pending acks ride on the next claim, a claim that failed is retried with its acks, and a claim
  whose reply was lost is noticed (``self._suspect``) so that the next claim delivers what it took;
* batched acks (``ack``/``ack_many`` queue them; the heartbeat thread writes them within
  ``ack_flush_interval``, or the next claim does);
* the "running" marks of :meth:`Broker.started`, written in groups (:class:`GroupCommit`);
* the heartbeat thread (heartbeat, ack flushing, reaping) and ``close`` (settle the acks, give back the
  rows this consumer holds, deregister).

A subclass writes the statements: ``_claim``, ``_delete_acked``, ``_mark_running``, ``_beat``, ``_reap``,
``_release_all``, and ``_idle_wait``/``_notify`` where it has its own wake-ups (LISTEN/NOTIFY). It sets
``connection_errors`` to what its client raises when the server is away, beside ``BrokerUnavailable``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar, TypeVar

from .broker import Broker, BrokerCapabilities, Delivery
from .errors import BrokerUnavailable, ConfigError
from .journal import consumer_id, crash_loop_reason
from .retrying import retry_unavailable

__all__ = ["GroupCommit", "LeasedBroker", "consumer_id", "crash_loop_reason"]

T = TypeVar("T")
log = logging.getLogger("boostkernel.leasing")
_wakeups: dict[str, threading.Condition] = {}
_wakeups_lock = threading.Lock()


class GroupCommit:
    """Writes that callers must wait for, batched: the first caller writes everything queued so far while
    the others wait for it (one round trip for all the worker threads that started a task meanwhile).

    ``Broker.started`` uses it: the "running" mark must be in the database before the task runs (a task
    that kills its worker at once must be charged the crash), but a round trip per task and thread on
    one connection would serialize the workers. A failed write is logged once and not raised: the task
    still runs, only the crash accounting of that batch is lost.
    """

    def __init__(self, write: Callable[[list[Any]], None], what: str) -> None:
        self._write, self._what = write, what
        self._cond = threading.Condition()
        self._pending: list[Any] = []
        self._open = 0  # number of the batch new items join
        self._done = -1  # last batch written (or given up)
        self._writing = False
        self._warned = False

    def add(self, item: Any) -> None:
        with self._cond:
            self._pending.append(item)
            mine = self._open
            while True:
                if self._done >= mine:
                    return
                if not self._writing:
                    break
                self._cond.wait()
            self._writing = True
            batch, self._pending = self._pending, []
            no, self._open = self._open, self._open + 1
        try:
            self._write(batch)
        except Exception as exc:  # noqa: BLE001 - the task still runs; only crash accounting is degraded
            if not self._warned:
                self._warned = True
                log.warning("%s failed (%s): a crash of these tasks' worker will not be charged to them",
                            self._what, exc)
        finally:
            with self._cond:
                self._done, self._writing = no, False
                self._cond.notify_all()


def heartbeat_options(options: Mapping[str, Any]) -> tuple[float, float, float]:
    """``(heartbeat_interval, dead_after, reap_interval)`` from broker options (defaults 2, 10 and 2 s): the
    timing of every broker whose consumers heartbeat and whose reaper returns a dead consumer's messages."""
    return (float(options.get("heartbeat_interval", 2.0)), float(options.get("dead_after", 10.0)),
            float(options.get("reap_interval", 2.0)))


class LeasedBroker(Broker):
    """Base of at-least-once brokers on a database: claims with an owner, heartbeats, a reaper, batched acks.

    See the module's documentation for what it does and what a subclass writes.
    """

    #: What every leased broker provides (durable rows, owners, a dead-letter table, native delay).
    capabilities = BrokerCapabilities(
        ack=True, requeue=True, priority=True, delay=True, durable=True, count=True, purge=True,
        batch_publish=True, dead_letter=True, cross_process=True,
    )

    #: Errors of the client library that mean "the server is away" (besides ``BrokerUnavailable``).
    connection_errors: ClassVar[tuple[type[BaseException], ...]] = ()
    #: ``idle_poll`` when the options do not set it: the longest sleep of an idle consumer between claims.
    default_idle_poll: ClassVar[float] = 0.5
    #: True where publishes wake idle consumers of every host (LISTEN/NOTIFY): an idle consumer then waits
    #: ``idle_poll`` at once instead of polling with backoff from 5 ms.
    wakes_on_publish: ClassVar[bool] = False

    def __init__(self, queue: str, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(queue, url, params, **options)
        o = self.options
        self.heartbeat_interval, self.dead_after, self.reap_interval = heartbeat_options(o)
        """Seconds between heartbeats; without one for ``dead_after`` a consumer is dead and its messages come
        back (found by a reaper every ``reap_interval``)."""
        self.ack_flush_interval = float(o.get("ack_flush_interval", 0.02))
        self.idle_poll = float(o.get("idle_poll", self.default_idle_poll))
        self.publish_timeout = float(o.get("publish_timeout", 30.0))
        if self.dead_after <= self.heartbeat_interval * 2:
            raise ConfigError(f"dead_after ({self.dead_after}s) must be more than twice heartbeat_interval "
                              f"({self.heartbeat_interval}s), or live workers would be declared dead")
        self.owner = consumer_id()
        self._acks: list[Any] = []
        """Tags acked and not yet deleted (``ack`` adds, :meth:`_ack_batch` takes); under ``_acks_lock``."""
        self._acks_lock = threading.Lock()
        self._ack_wake = threading.Event()
        self._held: set[Any] = set()  # tags delivered and not yet settled in the database
        self._suspect = False  # a claim failed mid-flight: it may have claimed rows we never saw
        self._hb_thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._wake: threading.Condition | None = None
        self._starts = GroupCommit(self._mark_running, f"marking tasks of {queue!r} as running")

    # --- what a subclass writes ---------------------------------------------------------------------
    def _claim(self, n: int, acks: list[Any]) -> list[Delivery]:
        """Delete ``acks`` (rows this consumer owns) and claim up to ``n`` ready messages, in delivery
        order. While ``self._suspect`` is true, also deliver the rows this consumer owns that are neither
        in ``self._held`` nor claimed now (a previous claim committed but its reply was lost)."""
        raise NotImplementedError

    def _with_lost(self, claimed: list[T], lost: list[T]) -> list[T]:
        """For ``_claim`` while ``self._suspect``: ``claimed`` and then ``lost``, the rows this consumer owns
        that it never delivered (a previous claim committed but its reply was lost), said on the log."""
        if lost:
            self.log.warning("queue %r: delivering %d message(s) claimed by a fetch whose reply was lost",
                             self.queue, len(lost))
        return claimed + lost

    def _delete_acked(self, tags: list[Any]) -> None:
        """Delete the rows ``tags`` that this consumer still owns."""
        raise NotImplementedError

    def _mark_running(self, tags: list[Any]) -> None:
        """Mark the rows ``tags`` (owned by this consumer) running: a crash now is charged to them."""
        raise NotImplementedError

    def _beat(self) -> None:
        """Write this consumer's heartbeat (registers the consumer the first time)."""
        raise NotImplementedError

    def _reap(self) -> tuple[int, int]:
        """Give back the rows of consumers silent for ``dead_after``, charging a crash to the running ones;
        dead-letter those at ``max_crashes`` (:func:`crash_loop_reason`). Return (given back, dead-lettered)."""
        raise NotImplementedError

    def _release_all(self) -> int:
        """On close: give back every row this consumer owns (not running) and deregister; wake consumers.
        Return how many rows came back."""
        raise NotImplementedError

    def _wakeup_key(self) -> str:
        """Which in-process wake-up condition this broker shares (same database, tables and queue)."""
        return f"{self.name}|{self.url}|{self.queue}"

    def _idle_wait(self, timeout: float) -> None:
        """Sleep up to ``timeout`` s, or until a publish of this process wakes the queue."""
        wake = self._local_wakeup()
        with wake:
            wake.wait(timeout)

    def _notify(self) -> None:
        """Wake this queue's idle consumers (of this process; override for cross-host wake-ups)."""
        wake = self._local_wakeup()
        with wake:
            wake.notify_all()

    def _local_wakeup(self) -> threading.Condition:
        if self._wake is None:
            with _wakeups_lock:
                self._wake = _wakeups.setdefault(self._wakeup_key(), threading.Condition())
        return self._wake

    # --- helpers ------------------------------------------------------------------------------------
    def retrying(self, fn: Callable[[], T], what: str) -> T:
        """``fn()``, retried with capped backoff while it raises ``BrokerUnavailable``, for at most
        ``publish_timeout`` seconds (publishes, nacks, dead letters: they must not be dropped)."""
        return retry_unavailable(fn, self.publish_timeout, what, self.log)

    def _server_away(self) -> tuple[type[BaseException], ...]:
        return (BrokerUnavailable, *self.connection_errors)

    def _forget(self, tag: Any) -> None:
        self._held.discard(tag)

    def _settled(self, tags: Iterable[Any]) -> None:
        held = self._held
        for t in tags:
            held.discard(t)

    # --- consuming ----------------------------------------------------------------------------------
    def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        if self._hb_thread is None:
            self._start()
        deadline = time.monotonic() + timeout
        pause = self.idle_poll if self.wakes_on_publish else 0.005
        while True:
            try:
                with self._ack_batch() as acks:
                    got = self._claim(max_messages, acks)
            except BaseException:
                self._suspect = True
                raise
            self._suspect = False
            self._settled(acks)
            if got:
                self._held.update(d.tag for d in got)
                return got
            left = deadline - time.monotonic()
            if left <= 0 or self._closed.is_set():
                return []
            self._idle_wait(min(pause, left))
            pause = min(pause * 2, self.idle_poll)

    def started(self, delivery: Delivery) -> None:
        """Mark the row running before the task runs (batched with other threads' marks): if this worker
        dies now, the reaper charges the crash to this message and not to the ones only prefetched."""
        self._starts.add(delivery.tag)

    def ack(self, delivery: Delivery) -> None:
        if self._closed.is_set():
            return  # close() gave it back to the queue: it runs again (at-least-once)
        with self._acks_lock:
            self._acks.append(delivery.tag)
        self._ack_wake.set()

    def ack_many(self, deliveries: Iterable[Delivery]) -> None:
        if self._closed.is_set():
            return
        with self._acks_lock:
            self._acks.extend(d.tag for d in deliveries)
        self._ack_wake.set()

    def flush_acks(self) -> None:
        """Write the queued acks now (the heartbeat thread does it within ``ack_flush_interval``)."""
        with self._ack_batch() as acks:
            if not acks:
                return
            self._delete_acked(acks)
        self._settled(acks)

    @contextlib.contextmanager
    def _ack_batch(self) -> Iterator[list[Any]]:
        """Take every queued ack for the with-block; if it raises, they go back first in line (none is lost)."""
        with self._acks_lock:
            acks, self._acks = self._acks, []
        try:
            yield acks
        except BaseException:
            with self._acks_lock:
                self._acks[:0] = acks
            raise

    # --- heartbeat, ack flushing and the reaper -----------------------------------------------------
    def _start(self) -> None:
        self.retrying(self._beat, "registering the consumer")
        self._hb_thread = threading.Thread(target=self._heartbeat_loop, daemon=True,
                                           name=f"boostkernel-{self.name}-heartbeat-{self.queue}")
        self._hb_thread.start()

    def _heartbeat_loop(self) -> None:
        now = time.monotonic()
        next_beat, next_reap = now + self.heartbeat_interval, now
        while not self._closed.is_set():
            now = time.monotonic()
            if self._ack_wake.wait(max(0.0, min(next_beat, next_reap) - now)):
                self._ack_wake.clear()
                if self._closed.wait(self.ack_flush_interval):  # gather a batch of acks
                    return
            if self._closed.is_set():
                return
            try:
                self.flush_acks()
                now = time.monotonic()
                if now >= next_beat:
                    self._beat()
                    next_beat = now + self.heartbeat_interval
                if now >= next_reap:
                    self.reap()
                    next_reap = now + self.reap_interval
            except self._server_away() as exc:  # the server is away: again shortly
                if self._closed.is_set():
                    return
                self.log.warning("%s heartbeat of queue %r failed: %s", self.name, self.queue, exc)
                self._closed.wait(min(1.0, self.heartbeat_interval))

    def reap(self) -> int:
        """Return messages of dead consumers to the queue; dead-letter crash loops. Returns how many came back."""
        back, dead = self._reap()
        if back or dead:
            self.log.warning("queue %r: returned %d message(s) of dead workers%s", self.queue, back,
                             f", {dead} crash-looping message(s) to the dead-letter queue" if dead else "")
        if back:
            self._notify()
        return back

    # --- lifecycle ----------------------------------------------------------------------------------
    def close(self) -> None:
        if not self.stop_background(self._closed, self._hb_thread, 10, wake=self._ack_wake):
            return
        if self._hb_thread is not None:  # a consumer: settle acks, give back what it holds, deregister
            try:
                self.flush_acks()
                n = self._release_all()
                if n:
                    self.log.info("queue %r: returned %d unacked message(s) on close", self.queue, n)
            except self._server_away() as exc:
                self.log.warning("could not return unacked messages on close (they come back once this "
                                 "consumer's heartbeat is %ss old): %s", self.dead_after, exc)
        self._close_connections()

    def _close_connections(self) -> None:
        """Close the broker's own connections (after ``close`` gave back what it held)."""
