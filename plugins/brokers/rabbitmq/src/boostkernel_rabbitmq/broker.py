"""The RabbitMQ broker (pika): a pushed channel behind the kernel's synchronous Broker interface.

Threads and connections (pika connections are not thread-safe):

* **consumer link** - one thread owns a ``SelectConnection`` (its IOLoop services heartbeats, so long
  tasks never lose the connection: tasks never run on this thread). ``basic_consume`` with manual ack and
  ``basic_qos(prefetch)`` fills an in-memory buffer that :meth:`RabbitmqBroker.fetch` drains. Worker
  threads hand acks/nacks to the link (coalesced wake-ups through ``add_callback_threadsafe``); an ack
  for a channel that has gone (reconnect, close) is dropped, never sent and never raised.
* **publisher link** - a second thread and connection, channel in confirm mode. Any thread hands it a
  batch; it publishes the whole batch (persistent, ``mandatory``) and the caller waits for the confirms:
  pipelined, so ``publish_many`` reaches tens of thousands per second. Unconfirmed messages of a lost
  connection are published again after the reconnect (at-least-once).
* **admin connection** - a ``BlockingConnection`` under a lock for count, purge and the dead-letter
  queue (rare operations).

Topology (all durable): ``<queue>`` (``x-max-priority``), ``<queue>.dlq`` (dead letters, reason in the
``x-bk-reason`` header) and ``<queue>.delay.<2^k ms>`` for k in 0..24: queue-level TTL and
dead-lettering back into ``<queue>``. A delayed message goes to the largest bucket not longer than its
remaining delay; when it comes back early the consumer link sends it to the next bucket (and acks the
copy only after the confirm), so it is never delivered before its ``eta`` and never held in memory. This
works on a stock RabbitMQ (no delayed-message plugin). Both links reconnect with capped exponential
backoff and jitter.

Crash loops (a message that kills its worker): RabbitMQ requeues every unacked delivery of a dead
connection, prefetched or running, so its own redelivery count cannot tell a poison message from its
bystanders. The death count is kept aside instead: the kernel calls :meth:`RabbitmqBroker.started` before
it runs a message, which appends the message id to this consumer's running journal (a small file,
:mod:`boostkernel.journal`). When a delivery arrives flagged ``redelivered``, the consumer link looks it
up in the journals of dead consumers of this host: if one was running it, the message is published
again with ``x-bk-crashes`` + 1 (the original acked after the confirm), or, at ``max_deliveries``
crashes, to ``<queue>.dlq`` with reason ``crash-loop``. Prefetched bystanders are not in any journal and
run normally. The queue's arguments are unchanged, so existing queues keep working. A consumer killed
on another host leaves no journal here: its messages are redelivered without a crash count.
"""

from __future__ import annotations

import atexit
import collections
import itertools
import logging
import math
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

try:
    import pika
    import pika.exceptions
    from pika.adapters.select_connection import IOLoop
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(f'the rabbitmq broker needs pika ({exc}): pip install "boostkernel[rabbitmq]"') from exc

from boostkernel.broker import Broker, BrokerCapabilities, DeadLetterRecord, Delivery, Outgoing, consumer_window
from boostkernel.errors import BrokerUnavailable, ConfigError, MessageRejected
from boostkernel.journal import CrashCharges, RunningJournal, consumer_id, crash_loop_reason, host_journal_dir
from boostkernel.logs import mask, mask_url
from boostkernel.retrying import backoff_delay

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
PUBLISH_SLICE = 250
"""Messages the publisher I/O thread encodes before it lets the IOLoop send them and read confirms."""
DELAY_LEVELS = 25
"""Delay buckets ``2^0 .. 2^24`` ms (1 ms to 4.6 h); longer delays take several hops of the largest."""
H_ETA, H_REASON, H_FAILED_AT, H_REQUEUES, H_QUEUE = "x-bk-eta", "x-bk-reason", "x-bk-failed-at", \
    "x-bk-requeues", "x-bk-queue"
H_CRASHES = "x-bk-crashes"

log = logging.getLogger("boostkernel.rabbitmq")


#: Smallest default ``basic_qos`` window. RabbitMQ sends a consumer no more than this many unacked
#: deliveries; the window must cover the running tasks, the prefetched ones and the acks still on their
#: way back, or the consumer waits a round trip for each small batch (at threads x16 with a window of
#: 32, half the speed of a raw pika consumer).
MIN_DEFAULT_WINDOW = 100


def default_window(params: Any) -> int:
    """The ``basic_qos`` prefetch count when ``broker_options`` does not set one: the booster's explicit
    ``prefetch`` if given, else running + prefetched tasks, and at least :data:`MIN_DEFAULT_WINDOW`.
    A broker made without booster parameters (direct use, the contract suite) keeps a window of 16
    (:func:`boostkernel.broker.consumer_window`)."""
    return consumer_window(params, MIN_DEFAULT_WINDOW, unbound=16)


def delay_bucket(remaining: float) -> int:
    """The TTL in ms of the largest delay bucket not longer than ``remaining`` seconds (at least 1 ms)."""
    ms = int(remaining * 1000)
    if ms < 1:
        return 1
    return 1 << min(ms.bit_length() - 1, DELAY_LEVELS - 1)


class _Batch:
    """Publisher confirms (or dead-letter confirms) awaited by a caller thread; settled on the I/O thread."""

    __slots__ = ("left", "event", "error")

    def __init__(self, n: int) -> None:
        self.left = n
        self.event = threading.Event()
        self.error: str | None = None

    def settle(self, error: str | None = None, message: Outgoing | None = None) -> None:
        if error is not None and self.error is None:
            self.error = error
        self.left -= 1
        if self.left <= 0:
            self.event.set()

    def fail(self, error: str, message: Outgoing | None = None) -> None:
        if self.error is None:
            self.error = error
        self.event.set()


class _Window:
    """The confirms of pipelined one-by-one ``publish()`` calls: how many are outstanding (at most
    ``limit``: ``publish()`` waits for room) and which were refused. Settled on the I/O thread."""

    __slots__ = ("cond", "outstanding", "limit", "errors", "waiting")

    def __init__(self, limit: int) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.outstanding = 0
        self.limit = limit
        self.errors: list[str] = []
        self.waiting = 0

    def reserve(self, timeout: float) -> bool:
        """Count one more publish in flight; wait (up to ``timeout``) while ``limit`` are unconfirmed."""
        with self.cond:
            if self.outstanding >= self.limit:
                self.waiting += 1
                try:
                    if not self.cond.wait_for(lambda: self.outstanding < self.limit, timeout):
                        return False
                finally:
                    self.waiting -= 1
            self.outstanding += 1
            return True

    def settle(self, error: str | None = None, message: Outgoing | None = None) -> None:
        with self.cond:
            self.outstanding -= 1
            if error is not None:
                self.errors.append(f"{message.id if message is not None else '?'} ({error})")
            if self.waiting:
                self.cond.notify_all()

    fail = settle

    def wait_empty(self, timeout: float | None) -> bool:
        with self.cond:
            self.waiting += 1
            try:
                return self.cond.wait_for(lambda: self.outstanding <= 0, timeout)
            finally:
                self.waiting -= 1

    def take_errors(self) -> list[str]:
        with self.cond:
            errors, self.errors = self.errors, []
            return errors


class _Link:
    """One pika ``SelectConnection`` + channel owned by one thread, reconnecting with backoff and jitter.

    ``setup(channel, ready)`` runs on the I/O thread for each new channel and calls ``ready()`` once the
    channel is configured; ``lost(reason)`` runs on the I/O thread when the channel goes away.
    Work from other threads is queued with :meth:`submit` and runs on the I/O thread, in order, only
    while the channel is ready.
    """

    def __init__(self, role: str, params: Any, setup: Callable[[Any, Callable[[], None]], None],
                 lost: Callable[[str], None], *, backoff_max: float, log: logging.Logger) -> None:
        self.role, self.params, self.setup, self.lost = role, params, setup, lost
        self.backoff_max, self.log = backoff_max, log
        self.batch_delay = 0.002
        self.ioloop: Any = None
        self.conn: Any = None
        self.channel: Any = None
        self.generation = 0
        self.ready = False
        self.ever_ready = False
        self.last_error: str | None = None
        self.first_attempt = threading.Event()
        self.closing = False
        self._attempt = 0
        self._work: collections.deque[Callable[[], None]] = collections.deque()
        self._wlock = threading.Lock()
        self._scheduled = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    # --- any thread -----------------------------------------------------------------------------
    def start(self) -> None:
        with self._start_lock:
            if self._thread is not None:
                return
            self.ioloop = IOLoop()
            self._thread = threading.Thread(target=self._run, name=f"boostkernel-rabbitmq-{self.role}", daemon=True)
            self._thread.start()

    @property
    def started(self) -> bool:
        return self._thread is not None

    def submit(self, fn: Callable[[], None], lazy: bool = False) -> None:
        """Run ``fn`` on the I/O thread once the channel is ready (FIFO; wake-ups are coalesced).

        ``lazy`` (acks): the I/O thread waits ``batch_delay`` before draining, so the acks of many tasks
        share one wake-up and one socket write instead of one each.
        """
        with self._wlock:
            self._work.append(fn)
            if self._scheduled:
                return
            self._scheduled = True
        self.ioloop.add_callback_threadsafe(self._drain_later if lazy else self._drain)

    def _drain_later(self) -> None:
        self.ioloop.call_later(self.batch_delay, self._drain)

    def shutdown(self, timeout: float) -> None:
        """Run queued work (pending acks), close the connection and stop the thread."""
        if self._thread is None:
            return
        self.ioloop.add_callback_threadsafe(self._shutdown)
        self._thread.join(timeout)

    # --- I/O thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        self._connect()
        try:
            self.ioloop.start()
        finally:
            try:
                self.ioloop.close()
            except Exception:  # noqa: BLE001 - closing a poller twice must not matter
                pass

    def _connect(self) -> None:
        if self.closing:
            self.ioloop.stop()
            return
        try:
            self.conn = pika.SelectConnection(
                self.params, on_open_callback=self._on_open, on_open_error_callback=self._on_open_error,
                on_close_callback=self._on_closed, custom_ioloop=self.ioloop)
        except Exception as exc:  # noqa: BLE001 - any failure means: retry later
            self._failed(exc)

    def _on_open(self, conn: Any) -> None:
        conn.channel(on_open_callback=self._on_channel_open)

    def _on_channel_open(self, ch: Any) -> None:
        self.channel = ch
        ch.add_on_close_callback(self._on_channel_closed)
        self.setup(ch, self._set_ready)

    def _set_ready(self) -> None:
        self.ready = True
        self.ever_ready = True
        self._attempt = 0
        self.last_error = None
        self.first_attempt.set()
        self._drain()

    def _on_channel_closed(self, ch: Any, reason: Exception) -> None:
        if ch is not self.channel:
            return
        self._lost(reason)
        conn = self.conn
        if conn is not None and conn.is_open:
            if not self.closing:
                self.log.warning("rabbitmq %s channel closed (%s); reconnecting", self.role, _describe(reason))
                self.last_error = _describe(reason)
            conn.close()

    def _lost(self, reason: BaseException | str) -> None:
        if self.channel is None and not self.ready:
            return
        self.ready = False
        self.channel = None
        self.generation += 1
        try:
            self.lost(_describe(reason))
        except Exception:  # noqa: BLE001
            self.log.exception("rabbitmq %s: cleanup after a lost channel failed", self.role)

    def _on_open_error(self, conn: Any, err: BaseException | str) -> None:
        self._failed(err)

    def _on_closed(self, conn: Any, reason: BaseException) -> None:
        self._lost(reason)
        if self.closing:
            self.ioloop.stop()
            return
        self._failed(reason)

    def _failed(self, err: BaseException | str) -> None:
        if self.closing:
            self.ioloop.stop()
            return
        desc = _describe(err)
        if self.last_error is None or "inequivalent" not in self.last_error:
            self.last_error = desc
        self.first_attempt.set()
        self._attempt += 1
        delay = backoff_delay(self._attempt, base=0.2, cap=self.backoff_max)
        self.log.warning("rabbitmq %s connection to %s failed (%s); retrying in %.1fs", self.role,
                         mask_url(_url_of(self.params)), self.last_error, delay)
        self.ioloop.call_later(delay, self._connect)

    def _drain(self) -> None:
        with self._wlock:
            self._scheduled = False
        if not self.ready:
            return  # runs again from _set_ready
        while self.ready:
            with self._wlock:
                if not self._work:
                    return
                items = list(self._work)
                self._work.clear()
            for fn in items:
                try:
                    fn()
                except Exception:  # noqa: BLE001 - one bad operation must not kill the I/O thread
                    self.log.exception("rabbitmq %s operation failed", self.role)

    def _shutdown(self) -> None:
        if self.ready:
            self._drain()  # flush acks handed over before close()
        self.closing = True
        conn = self.conn
        try:
            if conn is not None and not conn.is_closed and not conn.is_closing:
                conn.close()
                return  # _on_closed stops the loop
        except Exception:  # noqa: BLE001
            pass
        self.ioloop.stop()


#: Brokers with pipelined publishes not yet known to be confirmed: flushed when the interpreter exits.
_pipelined: weakref.WeakSet[RabbitmqBroker] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    for broker in list(_pipelined):
        try:
            broker.flush()
        except Exception as exc:  # noqa: BLE001 - nothing can be raised to anyone at exit: say it loudly
            broker.log.error("at exit: %s", exc)


def _describe(reason: BaseException | str) -> str:
    text = reason if isinstance(reason, str) else f"{type(reason).__name__}: {reason}"
    if "inequivalent arg" in text:
        text += (" - the queue already exists with other arguments (e.g. another x-max-priority); delete it "
                 "or set broker_options={'max_priority': ...} to match")
    return mask(text)


def _url_of(params: Any) -> str:
    return f"amqp://{params.credentials.username}@{params.host}:{params.port}/{params.virtual_host}"


class RabbitmqBroker(Broker):
    """RabbitMQ through pika. At-least-once: manual ack after execution, publisher confirms, durable."""

    name = "rabbitmq"
    # and the defaults: ack, requeue, count, purge, dead letters, cross-process
    capabilities = BrokerCapabilities(priority=True, delay=True, durable=True, batch_publish=True)
    default_url = DEFAULT_URL
    url: str  # never None: checked in __init__

    check_at_decoration = True  # __init__ checks the URL and options and does not connect

    def __init__(self, queue: str, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(queue, url, params, **options)
        o = self.options
        self.checked_url(("amqp", "amqps"), "an amqp:// or amqps:// URL")
        self.max_priority = int(o.get("max_priority", 10))
        if not 0 <= self.max_priority <= 255:
            raise ConfigError(f"broker_options max_priority={self.max_priority!r}: must be 0..255 (0 = no priority)")
        self.prefetch = int(o.get("prefetch", default_window(params))) or 1
        self.publish_timeout = float(o.get("publish_timeout", 30.0))
        self.confirm_each = bool(o.get("confirm_each", False))
        window = int(o.get("publish_window", 10_000))
        if window < 1:
            raise ConfigError(f"broker_options publish_window={window!r}: must be >= 1")
        self._window = _Window(window)
        self._window_registered = False
        self.connect_timeout = float(o.get("connect_timeout", 10.0))
        self.backoff_max = float(o.get("backoff_max", 30.0))
        self.owner = consumer_id()
        self.journal_dir = host_journal_dir("rabbitmq-" + queue)
        self.journal = RunningJournal(self.journal_dir, self.owner)
        # RabbitMQ redelivers a message only after the connection that held it closed, so the consumer whose
        # journal lists it lost it: it died (or, rarely, its connection dropped while it kept running the task)
        self._crashes = CrashCharges(self.journal_dir, self.owner, live_too=True)
        self._touched_at = 0.0
        self._copies: dict[str, list[Delivery]] = {}
        """Crash-counted copies published and not confirmed yet -> their deliveries held back (I/O thread)."""
        self.dlq = f"{queue}.dlq"
        self.buckets = [f"{queue}.delay.{1 << k}" for k in range(DELAY_LEVELS)]
        try:
            base = pika.URLParameters(self.url)
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(f"invalid RabbitMQ URL {mask_url(self.url)!r}: {exc}") from None
        if "heartbeat" in o:
            base.heartbeat = int(o["heartbeat"])
        base.connection_attempts = 1
        base.socket_timeout = self.connect_timeout
        base.blocked_connection_timeout = float(o.get("blocked_connection_timeout", 300.0))
        self._base_params = base
        self._closed = False
        self._lock = threading.Lock()
        # consumer side
        self._buf: collections.deque[Delivery] = collections.deque()
        self._cond = threading.Condition()
        self._con: _Link | None = None
        self._c_seq = 0
        self._c_pending: dict[int, Callable[[bool], None]] = {}
        self._unsettled: collections.deque[int] = collections.deque()
        """Delivery tags of the live channel not yet acked/nacked, in delivery order (I/O thread only)."""
        self._acks: collections.deque[tuple[int, int]] = collections.deque()
        """(generation, tag) acked by worker threads, sent by the next flush on the I/O thread."""
        self._ack_flush_scheduled = False
        # publisher side
        self._pub: _Link | None = None
        self._p_seq = 0
        self._p_pending: dict[int, tuple[Outgoing, _Batch | _Window]] = {}
        self._returned: dict[str, str] = {}
        # admin side
        self._admin_lock = threading.Lock()
        self._admin_conn: Any = None
        self._admin_ch: Any = None

    # --- topology ---------------------------------------------------------------------------------
    def _queue_args(self) -> dict[str, Any]:
        return {"x-max-priority": self.max_priority} if self.max_priority else {}

    def topology(self) -> list[tuple[str, dict[str, Any]]]:
        """Every queue this broker uses, with its arguments."""
        decls: list[tuple[str, dict[str, Any]]] = [(self.queue, self._queue_args()), (self.dlq, {})]
        for k, name in enumerate(self.buckets):
            decls.append((name, {"x-message-ttl": 1 << k, "x-dead-letter-exchange": "",
                                 "x-dead-letter-routing-key": self.queue}))
        return decls

    def _declare_async(self, ch: Any, done: Callable[[], None]) -> None:
        decls = self.topology()
        left = [len(decls)]

        def ok(_frame: Any) -> None:
            left[0] -= 1
            if left[0] == 0:
                done()

        for name, args in decls:
            ch.queue_declare(name, durable=True, arguments=args, callback=ok)

    def _params(self, role: str) -> Any:
        p = pika.URLParameters(self.url)
        for attr in ("heartbeat", "connection_attempts", "socket_timeout", "blocked_connection_timeout"):
            setattr(p, attr, getattr(self._base_params, attr))
        p.client_properties = {"connection_name": f"boostkernel {self.queue} {role}"}
        return p

    def _props(self, m: Outgoing, eta: float | None) -> Any:
        pr = m.priority
        return pika.BasicProperties(
            content_type="application/json", delivery_mode=2, message_id=m.id,
            priority=(min(pr, self.max_priority) if pr > 0 and self.max_priority else None),
            headers={H_ETA: math.ceil(eta * 1000)} if eta is not None else None,
        )

    # --- publishing -------------------------------------------------------------------------------
    def _publisher(self) -> _Link:
        link = self._pub
        if link is None:
            with self._lock:
                if self._pub is None:
                    self._pub = _Link("publisher", self._params("publisher"), self._pub_setup, self._pub_lost,
                                      backoff_max=self.backoff_max, log=self.log)
                    self._pub.start()
                link = self._pub
        return link

    def _pub_setup(self, ch: Any, ready: Callable[[], None]) -> None:
        self._p_seq = 0
        self._p_pending = {}
        ch.add_on_return_callback(self._on_return)
        ch.confirm_delivery(self._on_pub_confirm, callback=lambda _f: self._declare_async(ch, ready))

    def _pub_lost(self, reason: str) -> None:
        pending, self._p_pending = self._p_pending, {}
        assert self._pub is not None
        if self._pub.closing:
            for m, batch in pending.values():
                batch.fail(f"broker closed before the confirm ({reason})", m)
        elif pending:  # unconfirmed: publish again after the reconnect (at-least-once)
            self._pub.submit(partial(self._pub_send, list(pending.values())))

    def _pub_send(self, items: list[tuple[Outgoing, _Batch | _Window]]) -> None:
        """Publish on the I/O thread, ``PUBLISH_SLICE`` messages at a time: between slices the IOLoop runs,
        so frames already buffered go out and confirms come back while the rest is still being encoded."""
        link = self._pub
        assert link is not None
        if not link.ready:
            link.submit(partial(self._pub_send, items))  # runs again once the channel is back
            return
        ch = link.channel
        chunk, rest = items[:PUBLISH_SLICE], items[PUBLISH_SLICE:]
        pending, seq, queue = self._p_pending, self._p_seq, self.queue
        publish, now, props = ch.basic_publish, time.time(), self._props
        i = 0
        try:
            for i, (m, batch) in enumerate(chunk):  # noqa: B007 - i is used after the loop
                eta = m.eta
                if eta is not None and eta - now > 0.0005:
                    rk, p = f"{queue}.delay.{delay_bucket(eta - now)}", props(m, eta)
                else:
                    rk, p = queue, props(m, None)
                seq += 1
                pending[seq] = (m, batch)
                publish("", rk, m.body, p, mandatory=True)
        except Exception as exc:  # noqa: BLE001
            if ch.is_open:  # not a lost channel: this message cannot be sent at all
                pending.pop(seq, (None, None))
                chunk[i][1].fail(f"cannot publish: {type(exc).__name__}: {exc}", chunk[i][0])
                seq -= 1
            self.log.debug("publish interrupted (%s)", exc)
            rest = chunk[i + 1:] + rest
            if rest and not ch.is_open:  # the channel died mid-batch: the rest waits for the reconnect
                link.submit(partial(self._pub_send, rest))
                rest = []
        finally:
            self._p_seq = seq
        if rest:
            link.ioloop.call_later(0, partial(self._pub_send, rest))

    def _on_return(self, ch: Any, method: Any, props: Any, body: bytes) -> None:
        self._returned[props.message_id or ""] = f"unroutable: {method.reply_code} {method.reply_text}"

    def _on_pub_confirm(self, frame: Any) -> None:
        m = frame.method
        tag = m.delivery_tag
        error = None if isinstance(m, pika.spec.Basic.Ack) else "the broker refused the message (Basic.Nack)"
        pending = self._p_pending
        if m.multiple:
            keys = list(itertools.takewhile(lambda k: k <= tag, pending))
        else:
            keys = [tag] if tag in pending else []
        returned = self._returned
        for k in keys:
            msg, batch = pending.pop(k)
            if returned:
                err = returned.pop(msg.id, None)
                batch.settle(err or error, msg)
            else:
                batch.settle(error, msg)

    def publish(self, message: Outgoing) -> None:
        """Publish one message. Pipelined (unless ``confirm_each``): returns once the message is handed to
        the publisher link; its confirm is tracked, and a message the broker did not confirm makes the next
        ``publish()``, :meth:`flush` or :meth:`close` raise. At most ``publish_window`` are unconfirmed at
        once; a normally exiting process waits for every confirm (atexit).

        The consumer's own publishes (retries, delayed copies) always wait for their confirm: the original
        delivery is acked right after, so the copy must be safe first."""
        if self.confirm_each or self._con is not None:
            self.publish_many((message,))
            return
        window = self._window
        if window.errors:
            self._raise_unconfirmed()
        link = self._ready_publisher()
        if not window.reserve(self.publish_timeout):
            raise BrokerUnavailable(f"no publisher confirm from RabbitMQ at {mask_url(self.url)} within "
                                    f"{self.publish_timeout}s for {window.outstanding} pipelined message(s) "
                                    f"({link.last_error or 'broker slow or blocked'})")
        if not self._window_registered:
            self._window_registered = True
            _pipelined.add(self)
        link.submit(partial(self._pub_send, [(message, window)]))

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every pipelined ``publish()`` is confirmed; raise for those that were not."""
        window = self._window
        t = self.publish_timeout if timeout is None else timeout
        if window.outstanding and not window.wait_empty(t):
            link = self._pub
            raise BrokerUnavailable(f"no publisher confirm from RabbitMQ at {mask_url(self.url)} within {t}s "
                                    f"for {window.outstanding} pipelined message(s) "
                                    f"({(link.last_error if link else None) or 'broker slow or blocked'})")
        if window.errors:
            self._raise_unconfirmed()

    def _raise_unconfirmed(self) -> None:
        errors = self._window.take_errors()
        if errors:
            shown = "; ".join(errors[:10]) + (f"; … {len(errors) - 10} more" if len(errors) > 10 else "")
            raise MessageRejected(f"RabbitMQ did not confirm {len(errors)} earlier published message(s) for "
                                  f"queue {self.queue!r}: {shown}")

    def _ready_publisher(self) -> _Link:
        if self._closed:
            raise BrokerUnavailable(f"rabbitmq broker for queue {self.queue!r} is closed")
        link = self._pub or self._publisher()
        if not link.ever_ready:
            link.first_attempt.wait(self.connect_timeout)
            if not link.ever_ready:
                raise BrokerUnavailable(f"cannot publish to RabbitMQ at {mask_url(self.url)}: "
                                        f"{link.last_error or 'connection timed out'}")
        return link

    def publish_many(self, messages: Sequence[Outgoing]) -> None:
        """Publish the whole batch pipelined, then wait for every publisher confirm."""
        if not messages:
            return
        link = self._ready_publisher()
        batch = _Batch(len(messages))
        link.submit(partial(self._pub_send, [(m, batch) for m in messages]))
        if not batch.event.wait(self.publish_timeout):
            raise BrokerUnavailable(f"no publisher confirm from RabbitMQ at {mask_url(self.url)} within "
                                    f"{self.publish_timeout}s ({link.last_error or 'broker slow or blocked'})")
        if batch.error:
            raise MessageRejected(f"RabbitMQ did not accept message(s) for queue {self.queue!r}: {batch.error}")

    # --- consuming --------------------------------------------------------------------------------
    def _consumer(self) -> _Link:
        link = self._con
        if link is None:
            with self._lock:
                if self._con is None:
                    self._crashes.sweep()  # journals of consumers gone long ago
                    self.journal.open()
                    self._con = _Link("consumer", self._params("consumer"), self._con_setup, self._con_lost,
                                      backoff_max=self.backoff_max, log=self.log)
                    self._con.start()
                link = self._con
        return link

    def _con_setup(self, ch: Any, ready: Callable[[], None]) -> None:
        self._c_seq = 0
        self._c_pending = {}
        self._unsettled = collections.deque()
        link = self._con
        assert link is not None

        def consume() -> None:
            ch.basic_consume(self.queue, self._on_message, auto_ack=False, callback=lambda _f: ready())

        def on_cancel(_frame: Any) -> None:  # the queue was deleted: reconnect re-declares it
            if link.conn is not None and link.conn.is_open:
                link.conn.close()

        ch.add_on_cancel_callback(on_cancel)
        ch.basic_qos(prefetch_count=self.prefetch, callback=lambda _f: ch.confirm_delivery(
            self._on_con_confirm, callback=lambda _f2: self._declare_async(ch, consume)))

    def _con_lost(self, reason: str) -> None:
        self._copies = {}
        with self._cond:
            self._buf.clear()  # the broker redelivers them; their tags belong to the dead channel
        pending, self._c_pending = self._c_pending, {}
        for cb in pending.values():
            cb(False)

    def _on_message(self, ch: Any, method: Any, props: Any, body: bytes) -> None:
        headers = props.headers
        count = 2 if method.redelivered else 1
        self._unsettled.append(method.delivery_tag)
        if headers:
            eta_ms = headers.get(H_ETA)
            if eta_ms is not None and eta_ms / 1000.0 - time.time() > 0.0005:
                self._hop(ch, method.delivery_tag, props, body, eta_ms / 1000.0)
                return
            requeues = headers.get(H_REQUEUES)
            if requeues:
                count += int(requeues)
        crashes = int(headers.get(H_CRASHES, 0)) if headers else 0
        if method.redelivered and props.message_id:
            mid = props.message_id
            charged, confirmed = self._charged(mid)
            if charged < 0 or (confirmed and crashes < charged):
                # a newer copy (or the dead-lettered one) is confirmed: this is a stale duplicate of an older one
                self._forget(method.delivery_tag)
                ch.basic_ack(method.delivery_tag)
                return
            crashes = max(crashes, charged)
            if self._crashes.running_owner(mid):
                self._charge_crash(ch, method.delivery_tag, props, body, crashes + 1)
                return
        d = Delivery(props.message_id or "", body, (self._con.generation, method.delivery_tag),  # type: ignore[union-attr]
                     count + crashes, {"props": props}, crashes)
        if self._copies and d.id in self._copies:  # our crash-counted copy: not before its original is acked
            self._copies[d.id].append(d)
            return
        with self._cond:
            self._buf.append(d)
            self._cond.notify()

    def _charge_path(self, mid: str) -> Path:
        return Path(self.journal_dir) / "charged" / re.sub(r"[^A-Za-z0-9_.-]", "_", mid)

    def _charged(self, mid: str) -> tuple[int, bool]:
        """(crashes charged to ``mid`` so far, whether the copy carrying them is confirmed); -1 when a copy
        is confirmed in the DLQ.

        Kept in a small file per charged message because a copy and its original can both circulate: the
        original is acked only after the copy's confirm, so a consumer that dies in between leaves both."""
        try:
            text = self._charge_path(mid).read_text()
            return int(text.lstrip("p")), not text.startswith("p")
        except (OSError, ValueError):
            return 0, True

    def _record_charge(self, mid: str, crashes: int, confirmed: bool) -> None:
        try:
            path = self._charge_path(mid)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(("" if confirmed else "p") + str(crashes))
        except OSError:
            pass

    def _dead_lettered(self, ch: Any, tag: int, mid: str, ok: bool) -> None:
        if ok:
            self._record_charge(mid, -1, True)
        self._settle_original(ch, tag, ok)

    def _charge_crash(self, ch: Any, tag: int, props: Any, body: bytes, crashes: int) -> None:
        """A dead consumer was running this delivery: count the crash in a copy, or dead-letter a crash loop."""
        mid = props.message_id
        owner = self._crashes.running_owner(mid)
        if owner is not None:  # charged once: the dead consumer's journal no longer lists it as running
            self._crashes.discharge(owner, mid)
        if crashes >= self.max_crashes:
            reason = crash_loop_reason(crashes, owner or "?")
            self.log.error("message %s dead-lettered: %s", mid, reason)
            p = pika.BasicProperties(
                content_type="application/json", delivery_mode=2, message_id=mid,
                headers={H_REASON: reason, H_FAILED_AT: int(time.time() * 1000), H_QUEUE: self.queue,
                         **({"x-bk-priority": props.priority} if props.priority else {})})
            self._confirm_then(ch, self.dlq, body, p, partial(self._dead_lettered, ch, tag, mid))
            return
        headers = {k: v for k, v in (props.headers or {}).items() if k != "x-death"}
        headers[H_CRASHES] = crashes
        p = pika.BasicProperties(content_type=props.content_type, delivery_mode=2, message_id=mid,
                                 priority=props.priority, headers=headers)
        self._record_charge(mid, crashes, False)  # before the copy exists: a duplicate counts from here
        self._copies[mid] = []
        self._confirm_then(ch, self.queue, body, p, partial(self._copy_confirmed, ch, tag, mid, crashes))

    def _copy_confirmed(self, ch: Any, tag: int, mid: str, crashes: int, ok: bool) -> None:
        """Ack the original, then release the copy if it already came back to us (I/O thread)."""
        self._record_charge(mid, crashes if ok else crashes - 1, True)  # not confirmed: the original stays
        self._settle_original(ch, tag, ok)
        held = self._copies.pop(mid, [])
        if held:
            with self._cond:
                self._buf.extend(held)
                self._cond.notify()

    def _confirm_then(self, ch: Any, rk: str, body: bytes, props: Any, then: Callable[[bool], None]) -> None:
        """Publish on the consumer channel (confirm mode); call ``then(ok)`` on the confirm."""
        self._c_seq += 1
        self._c_pending[self._c_seq] = then
        ch.basic_publish("", rk, body, props, mandatory=False)

    def _on_con_confirm(self, frame: Any) -> None:
        m = frame.method
        ok = isinstance(m, pika.spec.Basic.Ack)
        pending = self._c_pending
        keys = list(itertools.takewhile(lambda k: k <= m.delivery_tag, pending)) if m.multiple else [m.delivery_tag]
        for k in keys:
            cb = pending.pop(k, None)
            if cb is not None:
                cb(ok)

    def _forget(self, tag: int) -> None:
        try:
            self._unsettled.remove(tag)
        except ValueError:
            pass

    def _settle_original(self, ch: Any, tag: int, ok: bool) -> None:
        if not ch.is_open:
            return
        self._forget(tag)
        if ok:
            ch.basic_ack(tag)
        else:
            ch.basic_nack(tag, requeue=True)

    def _hop(self, ch: Any, tag: int, props: Any, body: bytes, eta: float,
             headers: dict[str, Any] | None = None) -> None:
        """Send a message to the delay bucket for its remaining time; ack the original on the confirm."""
        remaining = eta - time.time()
        new_headers = {k: v for k, v in (headers or props.headers or {}).items() if k != "x-death"}
        new_headers[H_ETA] = math.ceil(eta * 1000)
        p = pika.BasicProperties(content_type=props.content_type, delivery_mode=2, message_id=props.message_id,
                                 priority=props.priority, headers=new_headers)
        self._confirm_then(ch, f"{self.queue}.delay.{delay_bucket(remaining)}", body, p,
                           partial(self._settle_original, ch, tag))

    def buffered(self) -> int:
        """Deliveries RabbitMQ pushed to this consumer (``basic_qos`` window) that :meth:`fetch` has not
        returned yet, plus crash-counted copies held until their original's ack: unacked on the server, so
        ``count()`` and ``purge()`` leave them alone, and they go back to the queue when this consumer closes
        or dies."""
        return len(self._buf) + sum(map(len, tuple(self._copies.values())))

    def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        if self._closed:
            return []
        link = self._con or self._consumer()
        now = time.monotonic()
        if now > self._touched_at + 60:  # a journal untouched for an hour is swept as a dead consumer's
            self._touched_at = now
            self.journal.touch()
        got = self.take_buffered(self._buf, self._cond, max_messages, timeout)
        if not got and not link.ready and not link.ever_ready and link.first_attempt.is_set():
            raise BrokerUnavailable(f"cannot consume from RabbitMQ at {mask_url(self.url)}: {link.last_error}")
        return got

    def _current(self, delivery: Delivery) -> tuple[_Link, Any, int] | None:
        """(link, channel, tag) if the delivery belongs to the live channel, else ``None`` (dropped)."""
        link = self._con
        if link is None or not link.ready or not self.same_generation(delivery, link.generation, self.log,
                                                                      "channel"):
            return None
        return link, link.channel, delivery.tag[1]

    def _flush_acks(self) -> None:
        """Send every ack handed over so far (I/O thread). The run of acked tags at the head of the unsettled
        ones is one ``basic_ack(multiple=True)`` (it never covers a delivery still running or being
        dead-lettered); the others are acked one by one. Acks of an older channel are dropped."""
        self._ack_flush_scheduled = False  # before draining: an ack appended from now on schedules a new flush
        acks, link = self._acks, self._con
        gen = link.generation if link is not None and link.ready else -1
        tags: set[int] = set()
        while acks:
            g, tag = acks.popleft()
            if g == gen:
                tags.add(tag)
        if not tags or link is None:
            return
        ch, unsettled = link.channel, self._unsettled
        last = 0
        while unsettled and unsettled[0] in tags:
            last = unsettled.popleft()
            tags.discard(last)
        if last:
            ch.basic_ack(last, multiple=True)
        for tag in tags:
            self._forget(tag)
            ch.basic_ack(tag)

    def started(self, delivery: Delivery) -> None:
        """Record that this delivery runs now: one write(2) to this consumer's journal (see the module doc)."""
        self.journal.started(delivery.id)

    def ack(self, delivery: Delivery) -> None:
        self.journal.finished(delivery.id)
        link = self._con
        if self._closed or link is None:
            return  # stale: the channel is gone, the broker redelivers the message
        self._acks.append(delivery.tag)
        if not self._ack_flush_scheduled:
            self._ack_flush_scheduled = True
            # batch acks while deliveries are buffered; flush at once when the consumer is waiting for more
            link.submit(self._flush_acks, lazy=bool(self._buf))

    def ack_many(self, deliveries: Iterable[Delivery]) -> None:
        deliveries = list(deliveries)
        for d in deliveries:
            self.journal.finished(d.id)
        link = self._con
        if self._closed or link is None:
            return
        self._acks.extend(d.tag for d in deliveries)
        if not self._ack_flush_scheduled:
            self._ack_flush_scheduled = True
            link.submit(self._flush_acks, lazy=bool(self._buf))

    def _do_nack(self, d: Delivery, requeue: bool, delay: float) -> None:
        cur = self._current(d)
        if cur is None:
            return
        _link, ch, tag = cur
        if requeue and delay > 0:
            props = d.extra["props"]
            headers = dict(props.headers or {})
            headers[H_REQUEUES] = int(headers.get(H_REQUEUES, 0)) + 1
            self._hop(ch, tag, props, d.body, time.time() + delay, headers)
        else:
            self._forget(tag)
            ch.basic_nack(tag, requeue=requeue)

    def nack(self, delivery: Delivery, requeue: bool = True, delay: float = 0.0) -> None:
        self.journal.finished(delivery.id)
        link = self._con
        if self._closed or link is None:
            return
        link.submit(partial(self._do_nack, delivery, requeue, delay))

    def _do_dead(self, d: Delivery, reason: str, batch: _Batch) -> None:
        cur = self._current(d)
        if cur is None:
            batch.fail("the channel of this delivery is gone; the broker redelivers it")
            return
        _link, ch, tag = cur
        props = d.extra.get("props")
        p = pika.BasicProperties(
            content_type="application/json", delivery_mode=2, message_id=d.id,
            headers={H_REASON: reason, H_FAILED_AT: int(time.time() * 1000), H_QUEUE: self.queue,
                     **({"x-bk-priority": props.priority} if props is not None and props.priority else {})})

        def then(ok: bool) -> None:
            self._settle_original(ch, tag, ok)
            batch.settle(None if ok else "the dead-letter publish was not confirmed")

        self._confirm_then(ch, self.dlq, d.body, p, then)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Publish to ``<queue>.dlq`` with the reason header; ack the original only after the confirm."""
        self.journal.finished(delivery.id)
        link = self._con
        if self._closed or link is None:
            return
        batch = _Batch(1)
        link.submit(partial(self._do_dead, delivery, reason, batch))
        if not batch.event.wait(self.publish_timeout) or batch.error:
            self.log.warning("message %s not dead-lettered yet (%s); it will be redelivered", delivery.id,
                             batch.error or "timeout")

    # --- admin: count, purge, dead letters --------------------------------------------------------
    def _admin(self, fn: Callable[[Any, Any], Any], declare: bool = True) -> Any:
        if self._window.outstanding:  # count/purge/… see every message this process published before
            self.flush()
        with self._admin_lock:
            for attempt in (0, 1):
                try:
                    if self._admin_conn is None or not self._admin_conn.is_open:
                        p = self._params("admin")
                        p.heartbeat = 0  # used rarely: no heartbeats; a dead socket is retried once below
                        self._admin_conn = pika.BlockingConnection(p)
                        self._admin_ch = None
                        ch = self._admin_conn.channel()
                        for name, args in self.topology() if declare else ():
                            ch.queue_declare(name, durable=True, arguments=args)
                        self._admin_ch = ch
                    if self._admin_ch is None or not self._admin_ch.is_open:
                        self._admin_ch = self._admin_conn.channel()
                    return fn(self._admin_conn, self._admin_ch)
                except (pika.exceptions.AMQPError, OSError) as exc:
                    self._admin_ch = None
                    if isinstance(exc, pika.exceptions.ChannelClosedByBroker):
                        if exc.reply_code == 406:
                            raise ConfigError(_describe(exc)) from None
                    else:
                        self._close_admin()
                    if attempt:
                        raise BrokerUnavailable(f"RabbitMQ at {mask_url(self.url)}: {_describe(exc)}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _close_admin(self) -> None:
        conn, self._admin_conn, self._admin_ch = self._admin_conn, None, None
        if conn is not None:
            try:
                if conn.is_open:
                    conn.close()
            except Exception:  # noqa: BLE001
                pass

    def count(self) -> int:
        """Ready messages of the queue plus delayed ones (unacked deliveries are not counted)."""
        def run(_conn: Any, ch: Any) -> int:
            return sum(ch.queue_declare(q, passive=True).method.message_count for q in [self.queue, *self.buckets])

        return int(self._admin(run))

    def purge(self) -> int:
        def run(_conn: Any, ch: Any) -> int:
            return sum(ch.queue_purge(q).method.message_count for q in [self.queue, *self.buckets])

        return int(self._admin(run))

    def dead_letters(self, limit: int = 100) -> list[DeadLetterRecord]:
        """The oldest ``limit`` dead letters (read without removing them)."""
        def run(conn: Any, _ch: Any) -> list[DeadLetterRecord]:
            ch = conn.channel()
            out: list[DeadLetterRecord] = []
            try:
                while len(out) < limit:
                    method, props, body = ch.basic_get(self.dlq, auto_ack=False)
                    if method is None:
                        break
                    h = props.headers or {}
                    out.append(DeadLetterRecord(props.message_id or "", body, str(h.get(H_REASON, "")),
                                                int(h.get(H_FAILED_AT, 0)) / 1000.0))
            finally:
                ch.close()  # every message read goes back, in its place
            return out

        return list(self._admin(run))

    def replay_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        """Publish dead letters (all, or those with ``ids``) back to the queue (confirmed), then remove them."""
        wanted = set(ids) if ids is not None else None

        def run(conn: Any, _ch: Any) -> int:
            ch = conn.channel()
            ch.confirm_delivery()
            n = 0
            try:
                while True:
                    method, props, body = ch.basic_get(self.dlq, auto_ack=False)
                    if method is None:
                        break
                    if wanted is not None and props.message_id not in wanted:
                        continue  # stays unacked: back in the DLQ when the channel closes
                    h = props.headers or {}
                    pr = h.get("x-bk-priority")
                    ch.basic_publish("", self.queue, body, pika.BasicProperties(
                        content_type=props.content_type, delivery_mode=2, message_id=props.message_id,
                        priority=int(pr) if pr else None), mandatory=True)
                    ch.basic_ack(method.delivery_tag)
                    n += 1
            finally:
                ch.close()
            return n

        return int(self._admin(run))

    def purge_dead_letters(self) -> int:
        return int(self._admin(lambda _c, ch: ch.queue_purge(self.dlq).method.message_count))

    def delete_queues(self) -> None:
        """Delete every queue of this broker (the queue, its DLQ and delay buckets). For tests and teardown."""
        def run(_conn: Any, ch: Any) -> None:
            for name, _args in self.topology():
                ch.queue_delete(name)

        with self._admin_lock:
            self._close_admin()  # a fresh connection that declares nothing
        self._admin(run, declare=False)
        with self._admin_lock:
            self._close_admin()

    # --- lifecycle --------------------------------------------------------------------------------
    def close(self) -> None:
        """Wait for the confirms of pipelined publishes, flush pending acks, close the channels (the broker
        requeues unacked deliveries at once). Raises, after closing, if a pipelined publish was not confirmed."""
        if self._closed:
            return
        unconfirmed: BaseException | None = None
        if self._window.outstanding or self._window.errors:
            try:
                self.flush()
            except (BrokerUnavailable, MessageRejected) as exc:
                unconfirmed = exc
        self._closed = True
        _pipelined.discard(self)
        for link in (self._con, self._pub):
            if link is not None:
                link.shutdown(10.0)
        with self._cond:
            self._buf.clear()
        with self._admin_lock:
            self._close_admin()
        self.journal.close()
        if unconfirmed is not None:
            raise unconfirmed

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(prefetch=self.prefetch, max_priority=self.max_priority, dlq=self.dlq)
        return d
