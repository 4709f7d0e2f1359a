"""Any kombu transport as a boostkernel broker (``kombu+redis://``, ``kombu+amqp://``, ``kombu+memory://`` …).

kombu connections are not thread-safe, so:

* **consumer thread** - owns one connection and a ``kombu.Consumer`` (manual ack, ``prefetch_count``);
  it alternates ``drain_events(timeout=poll_interval)`` with the acks/nacks that worker threads queued,
  and fills the buffer that :meth:`KombuBroker.fetch` drains. A lost connection is re-opened with capped
  exponential backoff and jitter; acks for the old connection are dropped (the transport redelivers).
* **publisher connection** - one connection + ``Producer`` guarded by a lock, used from any thread, with
  kombu's own retry policy (and publisher confirms on the amqp transport). Count, purge and the dead-letter
  queue use it too.

The delivery guarantee is the transport's: at-least-once on amqp (RabbitMQ requeues unacked deliveries when
the channel closes) and on redis (kombu restores unacked messages on a clean close, and those of a killed
worker after their ``visibility_timeout``; a message whose unacked record was cut with the connection is
restored at once, see :func:`_track_unsure_deliveries`).

Redis transport: kombu keeps each unacked message in a hash and its tag in a sorted set scored by delivery
time (``unacked_index``); ``restore_visible`` requeues the entries older than ``visibility_timeout``
(kombu's default: 1 h). This broker makes that a lease (:class:`_UnackedLease`): ``visibility_timeout``
defaults to ``dead_after`` (10 s, :func:`boostkernel.leasing.heartbeat_options`), the consumer thread
re-scores the tags its channel holds (``ZADD XX`` with the current time) every ``heartbeat_interval``
(2 s), so a live consumer's long tasks and prefetched messages are never restored, and it runs
``restore_visible`` every ``reap_interval`` (2 s) itself, so a killed consumer's messages come back within
about ``dead_after + reap_interval`` while any consumer of the database runs. The keys are
``bk_unacked``, ``bk_unacked_index`` and ``bk_unacked_mutex``, not kombu's defaults, so the short timeout
never restores the messages of other kombu applications (celery workers with their 1 h) sharing the
database. ``transport_options`` still override each of these. Dead letters go to ``<queue>.dlq`` with the
reason in the ``x-bk-reason`` header. Priority and native delay are not declared (transports disagree on
them); the kernel's fallback republishes not-yet-due messages.

``nack(delay=d)`` publishes a copy carrying its due time (``x-bk-eta``, Unix ms) and acks the original. A
consumer that receives a copy before it is due keeps it unacked in a small local heap and hands it to
:meth:`KombuBroker.fetch` when due (a crash meanwhile: the transport redelivers it, still carrying its due
time). At most half the prefetch window is held this way; past that, the copy due last is published again
at the back of the queue and acked, so ready messages keep flowing.

Crash loops: :meth:`KombuBroker.started` appends the message id to this consumer's running journal
(:mod:`boostkernel.journal`, one ``write(2)``, locked while the process lives). A delivery flagged
``redelivered`` is looked up in the journals of dead consumers of this host: if one was running it, one
crash is charged (a per-message file beside the journals; each death counts once) and at
``max_deliveries`` crashes it goes to ``<queue>.dlq`` with reason ``crash-loop``; below that it is
delivered with ``crashes`` set. Prefetched bystanders are in no journal and are not charged. A consumer
killed on another host leaves no journal here: its messages are redelivered uncharged.
"""

from __future__ import annotations

import collections
import heapq
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

try:
    import kombu
    from kombu import Connection, Exchange, Queue
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(f'the kombu broker needs kombu ({exc}): pip install "boostkernel[kombu]"') from exc

from boostkernel.broker import Broker, BrokerCapabilities, DeadLetterRecord, Delivery, Outgoing
from boostkernel.errors import BrokerUnavailable, ConfigError
from boostkernel.journal import CrashCharges, RunningJournal, consumer_id, host_journal_dir
from boostkernel.leasing import heartbeat_options
from boostkernel.logs import mask, mask_url
from boostkernel.retrying import backoff_delay

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672//"
H_ID, H_REASON, H_FAILED_AT, H_REQUEUES = "x-bk-id", "x-bk-reason", "x-bk-failed-at", "x-bk-requeues"
H_ETA = "x-bk-eta"
_RETRY_POLICY = {"max_retries": 5, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 3.0}
REDIS_TRANSPORTS = ("redis", "rediss", "sentinel")
REDIS_KEYS = {"unacked_key": "bk_unacked", "unacked_index_key": "bk_unacked_index",
              "unacked_mutex_key": "bk_unacked_mutex"}

log = logging.getLogger("boostkernel.kombu")


def kombu_url(url: str) -> str:
    """``kombu+redis://h`` → ``redis://h``; other URLs are kombu URLs already."""
    return url[len("kombu+"):] if url.lower().startswith("kombu+") else url


def _track_unsure_deliveries(channel: Any) -> None:
    """Make kombu's redis transport restore a delivery whose unacked bookkeeping raised.

    The redis transport pops a message with ``BRPOP``, then records it as unacked (``ZADD`` + ``HSET`` in one
    ``MULTI``) and only then remembers its tag for the restore at channel close. When the connection drops
    after Redis ran that ``MULTI`` but before its reply came back, the bookkeeping raises: the message sits
    in the unacked hash on the server, the channel does not know it, and nothing returns it to the queue
    until ``visibility_timeout`` (1 h by default) - a lost message for that long. Here the tag is
    remembered anyway, and its restore requeues the stored copy when the server has one or the copy this
    process holds when the ``MULTI`` never reached the server (then nobody else has the message).
    Transports without this bookkeeping (amqp, memory) are left alone.
    """
    qos = getattr(channel, "qos", None)
    delivered = getattr(qos, "_delivered", None)
    if qos is None or delivered is None or not all(
            hasattr(qos, a) for a in ("restore_by_tag", "unacked_key", "unacked_index_key")) or not hasattr(
            channel, "_do_restore_message"):
        return
    from kombu.utils.encoding import bytes_to_str
    from kombu.utils.json import loads

    append, restore_by_tag = qos.append, qos.restore_by_tag
    unsure: dict[str, Any] = {}

    def tracked_append(message: Any, delivery_tag: str) -> None:
        try:
            append(message, delivery_tag)
        except BaseException:
            unsure[delivery_tag] = message
            delivered[delivery_tag] = message  # restored with the others when the channel closes
            raise

    def tracked_restore_by_tag(tag: Any, client: Any = None, leftmost: bool = False) -> None:
        message = unsure.pop(bytes_to_str(tag), None)
        if message is None:
            restore_by_tag(tag, client=client, leftmost=leftmost)
            return

        def restore(pipe: Any) -> None:
            stored = pipe.hget(qos.unacked_key, tag)
            pipe.multi()
            pipe.zrem(qos.unacked_index_key, tag).hdel(qos.unacked_key, tag)
            if stored:
                payload, exchange, routing_key = loads(bytes_to_str(stored))
            else:
                info = message.delivery_info
                payload, exchange, routing_key = message._raw, info["exchange"], info["routing_key"]
            channel._do_restore_message(payload, exchange, routing_key, pipe, leftmost)

        with channel.conn_or_acquire(client) as c:
            c.transaction(restore, qos.unacked_key)

    qos.append, qos.restore_by_tag = tracked_append, tracked_restore_by_tag


class _UnackedLease:
    """The lease of a consumer's unacked messages on kombu's redis transport (module doc): every
    ``heartbeat_interval`` the tags its channel holds get the current time as their ``unacked_index`` score
    (``ZADD XX``: a tag acked or restored meanwhile is not added back), and every ``reap_interval`` it runs
    kombu's ``restore_visible``, which requeues the entries nobody re-scored for ``visibility_timeout``
    (a dead consumer's). Runs on the consumer thread, which owns the channel."""

    def __init__(self, channel: Any, heartbeat_interval: float, reap_interval: float) -> None:
        self.channel, self.qos = channel, channel.qos
        self.heartbeat_interval, self.reap_interval = heartbeat_interval, reap_interval
        self.next_beat = self.next_reap = 0.0

    @staticmethod
    def applies(channel: Any) -> bool:
        qos = getattr(channel, "qos", None)
        return all(hasattr(qos, a) for a in ("unacked_index_key", "restore_visible", "_delivered", "_dirty")) \
            and hasattr(channel, "conn_or_acquire")

    def tick(self) -> None:
        now = time.monotonic()
        if now >= self.next_beat:
            self.next_beat = now + self.heartbeat_interval
            self.beat()
        if now >= self.next_reap:
            self.next_reap = now + self.reap_interval
            # interval=1: scan now (kombu's own calls, on empty polls, scan every 10th time)
            self.qos.restore_visible(num=getattr(self.channel, "unacked_restore_limit", None), interval=1)

    def beat(self) -> None:
        dirty = self.qos._dirty
        tags = [t for t in list(self.qos._delivered) if t not in dirty]
        if tags:
            score = time.time()
            with self.channel.conn_or_acquire() as client:
                client.zadd(self.qos.unacked_index_key, dict.fromkeys(tags, score), xx=True)


def _give_back(messages: list[Any]) -> None:
    """Requeue messages read without ack, newest first, so they return in their order on every transport."""
    for m in reversed(messages):
        try:
            m.requeue()
        except Exception:  # noqa: BLE001 - closing the channel returns them on amqp/redis anyway
            log.debug("requeue of a dead letter failed", exc_info=True)


class KombuBroker(Broker):
    """A kombu transport behind the kernel's synchronous Broker interface."""

    name = "kombu"
    capabilities = BrokerCapabilities(durable=True)  # and the defaults: ack, requeue, count, purge, dead letters
    default_url = DEFAULT_URL

    @classmethod
    def setup_booster(cls, booster: Any) -> None:
        """Decoration-time check: the URL names a kombu transport that can be loaded."""
        url = kombu_url(booster.params.broker_url or cls.default_url)
        try:
            Connection(url).transport_cls  # noqa: B018 - resolves and imports the transport
            Connection(url).transport  # noqa: B018
        except Exception as exc:  # noqa: BLE001 - unknown transport or missing client library
            raise ConfigError(f"kombu cannot use broker URL {mask_url(url)!r}: {type(exc).__name__}: {exc}. "
                              "Check the transport name or install its client (e.g. pip install redis)") from None

    def __init__(self, queue: str, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(queue, url, params, **options)
        o = self.options
        self.kurl = kombu_url(self.url or DEFAULT_URL)
        self.transport_options: dict[str, Any] = dict(o.get("transport_options", {}))
        probe = Connection(self.kurl, transport_options=self.transport_options)
        self.transport_name = probe.transport_cls if isinstance(probe.transport_cls, str) else \
            getattr(probe.transport, "driver_type", "?")
        if self.transport_name in ("amqp", "pyamqp"):
            self.transport_options.setdefault("confirm_publish", True)  # publisher confirms
        else:  # virtual transports: poll (redis: BRPOP timeout) often enough for prompt acks and close()
            self.transport_options.setdefault("polling_interval", 0.1)
        self.heartbeat_interval, self.dead_after, self.reap_interval = heartbeat_options(o)
        if self.transport_name in REDIS_TRANSPORTS:  # the unacked messages' lease (module doc)
            t = self.transport_options
            t.setdefault("visibility_timeout", self.dead_after)
            for key, name in REDIS_KEYS.items():
                t.setdefault(key, name)
            t.setdefault("unacked_mutex_expire", max(10, int(2 * self.reap_interval)))  # a killed reaper's lock
            visibility = float(t["visibility_timeout"])
            if visibility <= 2 * self.heartbeat_interval:
                raise ConfigError(f"visibility_timeout ({visibility}s) must be more than twice heartbeat_interval "
                                  f"({self.heartbeat_interval}s), or live consumers' messages would be restored")
            # a per-instance override: a killed consumer's messages come back within this
            self.capabilities = replace(type(self).capabilities,  # type: ignore[misc]
                                        recovery_seconds=visibility + self.reap_interval + 1.0)
        if self.transport_name == "memory":  # one process only, nothing survives it
            # a per-instance override of the class's capabilities: this transport's queues are in-process
            self.capabilities = replace(type(self).capabilities, durable=False, cross_process=False)  # type: ignore[misc]
        default_prefetch = params.effective_prefetch if params is not None else 16
        self.prefetch = int(o.get("prefetch", default_prefetch)) or 1
        self.poll_interval = float(o.get("poll_interval", 0.05))
        self.backoff_max = float(o.get("backoff_max", 30.0))
        self.connect_timeout = float(o.get("connect_timeout", 10.0))
        self.q = Queue(queue, Exchange(""), routing_key=queue, durable=True, auto_delete=False)
        self.dlq = Queue(f"{queue}.dlq", Exchange(""), routing_key=f"{queue}.dlq", durable=True, auto_delete=False)
        self._closed = False
        self._plock = threading.Lock()
        self._pconn: Any = None
        self._producer: Any = None
        self._buf: collections.deque[Delivery] = collections.deque()
        self._cond = threading.Condition()
        self._ops: collections.deque[Callable[[], None]] = collections.deque()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._gen = 0
        self._ready = False
        self._ever_ready = False
        self._first_attempt = threading.Event()
        self._last_error: str | None = None
        self.owner = consumer_id()
        self.journal_dir = host_journal_dir("kombu-" + queue)
        self.journal = RunningJournal(self.journal_dir, self.owner)
        self._crashes = CrashCharges(self.journal_dir, self.owner)
        self._waiting: list[tuple[float, int, Delivery]] = []
        """Copies from ``nack(delay)`` received before their due time: (due, seq, delivery), consumer thread."""
        self._wseq = 0

    def _connection(self) -> Any:
        return Connection(self.kurl, transport_options=self.transport_options, connect_timeout=self.connect_timeout)

    # --- publishing and admin (one lock-guarded connection) ---------------------------------------
    def _with_conn(self, fn: Callable[[Any], Any]) -> Any:
        with self._plock:
            for attempt in (0, 1):
                try:
                    if self._pconn is None:
                        conn = self._connection()
                        conn.ensure_connection(max_retries=2, interval_start=0.2, interval_max=1.0)
                        self._pconn = conn
                        self._producer = conn.Producer(serializer=None)
                    return fn(self._pconn)
                except Exception as exc:  # noqa: BLE001 - reconnect once, then report
                    recoverable = self._pconn is None or isinstance(
                        exc, tuple(self._pconn.connection_errors) + tuple(self._pconn.channel_errors) + (OSError,))
                    self._drop_pconn()
                    if attempt or not recoverable:
                        raise BrokerUnavailable(f"kombu broker {mask_url(self.kurl)}: "
                                                f"{mask(f'{type(exc).__name__}: {exc}')}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _drop_pconn(self) -> None:
        conn, self._pconn, self._producer = self._pconn, None, None
        if conn is not None:
            try:
                conn.release()
            except Exception:  # noqa: BLE001
                pass

    def _send(self, queue: Any, body: bytes, headers: dict[str, Any]) -> None:
        def run(conn: Any) -> None:
            self._producer.publish(
                body, exchange="", routing_key=queue.name, declare=[queue], content_type="application/json",
                content_encoding="binary", headers=headers, delivery_mode=2, retry=True, retry_policy=_RETRY_POLICY)

        self._with_conn(run)

    def publish(self, message: Outgoing) -> None:
        self._send(self.q, message.body, {H_ID: message.id})

    def publish_many(self, messages: Sequence[Outgoing]) -> None:
        for m in messages:
            self._send(self.q, m.body, {H_ID: m.id})

    def _bound(self, conn: Any, queue: Any, channel: Any = None) -> Any:
        b = queue.bind(channel or conn.default_channel)
        b.declare()
        return b

    def count(self) -> int:
        return int(self._with_conn(lambda c: self._bound(c, self.q).queue_declare().message_count or 0))

    def purge(self) -> int:
        return int(self._with_conn(lambda c: self._bound(c, self.q).purge() or 0))

    def dead_letters(self, limit: int = 100) -> list[DeadLetterRecord]:
        def run(conn: Any) -> list[DeadLetterRecord]:
            ch = conn.channel()
            out: list[DeadLetterRecord] = []
            read: list[Any] = []
            try:
                b = self._bound(conn, self.dlq, ch)
                while len(out) < limit:
                    m = b.get(no_ack=False, accept=None)
                    if m is None:
                        break
                    read.append(m)
                    h = m.headers or {}
                    out.append(DeadLetterRecord(str(h.get(H_ID, "")), m.body, str(h.get(H_REASON, "")),
                                                int(h.get(H_FAILED_AT, 0)) / 1000.0))
            finally:
                _give_back(read)
                ch.close()
            return out

        return list(self._with_conn(run))

    def replay_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        wanted = set(ids) if ids is not None else None

        def run(conn: Any) -> int:
            ch = conn.channel()
            n = 0
            kept: list[Any] = []
            try:
                b = self._bound(conn, self.dlq, ch)
                while True:
                    m = b.get(no_ack=False, accept=None)
                    if m is None:
                        break
                    h = m.headers or {}
                    if wanted is not None and h.get(H_ID) not in wanted:
                        kept.append(m)  # stays in the DLQ
                        continue
                    self._producer.publish(
                        m.body, exchange="", routing_key=self.queue, declare=[self.q], content_type="application/json",
                        content_encoding="binary", headers={H_ID: h.get(H_ID, "")}, delivery_mode=2)
                    m.ack()
                    n += 1
            finally:
                _give_back(kept)
                ch.close()
            return n

        return int(self._with_conn(run))

    def purge_dead_letters(self) -> int:
        return int(self._with_conn(lambda c: self._bound(c, self.dlq).purge() or 0))

    def delete_queues(self) -> None:
        """Delete the queue and its DLQ (tests and teardown)."""
        def run(conn: Any) -> None:
            for q in (self.q, self.dlq):
                try:
                    q.bind(conn.default_channel).delete()
                except Exception:  # noqa: BLE001 - already gone
                    pass

        self._with_conn(run)

    # --- consuming --------------------------------------------------------------------------------
    def _start(self) -> None:
        with self._plock:
            if self._thread is None:
                self._crashes.sweep()  # journals of consumers gone long ago
                self.journal.open()
                self._thread = threading.Thread(target=self._run, name=f"boostkernel-kombu-{self.queue}", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            conn = self._connection()
            try:
                conn.ensure_connection(max_retries=1)
                ch = conn.channel()
                _track_unsure_deliveries(ch)
                lease = _UnackedLease(ch, self.heartbeat_interval, self.reap_interval) \
                    if self.transport_name in REDIS_TRANSPORTS and _UnackedLease.applies(ch) else None
                consumer = kombu.Consumer(ch, queues=[self.q], on_message=self._on_message, no_ack=False,
                                          prefetch_count=self.prefetch, accept=None)
                consumer.consume()
                self._ready = self._ever_ready = True
                self._last_error = None
                self._first_attempt.set()
                attempt = 0
                while not self._stop.is_set():
                    self._run_ops()
                    try:
                        conn.drain_events(timeout=self.poll_interval)
                    except TimeoutError:
                        pass
                    if self._waiting:
                        self._release_due()
                    if lease is not None:
                        lease.tick()
                self._run_ops()  # acks handed over before close()
                try:
                    consumer.cancel()
                    if not getattr(ch, "do_restore", True):  # e.g. memory: return unacked messages ourselves
                        ch.qos.restore_unacked()
                except Exception:  # noqa: BLE001
                    pass
            except Exception as exc:  # noqa: BLE001 - reconnect on anything; report it
                self._last_error = mask(f"{type(exc).__name__}: {exc}")
                self._first_attempt.set()
                attempt += 1
                delay = backoff_delay(attempt, base=0.2, cap=self.backoff_max)
                self.log.warning("kombu consumer on %s failed (%s); reconnecting in %.1fs", mask_url(self.kurl),
                                 self._last_error, delay)
            finally:
                self._lost()
                try:
                    conn.release()  # closing the channel returns unacked messages to the queue
                except Exception:  # noqa: BLE001
                    pass
            if not self._stop.is_set() and attempt:
                self._stop.wait(delay)

    def _lost(self) -> None:
        self._ready = False
        self._gen += 1
        self._waiting = []  # unacked: the transport redelivers them
        with self._cond:
            self._buf.clear()  # the transport redelivers them

    def _on_message(self, message: Any) -> None:
        h = message.headers or {}
        count = 2 if message.delivery_info.get("redelivered") else 1
        requeues = h.get(H_REQUEUES)
        if requeues:
            count += int(requeues)
        d = Delivery(str(h.get(H_ID) or message.properties.get("message_id") or ""), message.body,
                     (self._gen, message), count)
        if count > 1 and d.id and self._charge_if_crashed(d):
            return
        eta = h.get(H_ETA)
        if eta is not None and int(eta) / 1000.0 > time.time():
            self._hold(d, int(eta) / 1000.0)
            return
        with self._cond:
            self._buf.append(d)
            self._cond.notify()

    def _charge_if_crashed(self, d: Delivery) -> bool:
        """A redelivery: charge a crash if a dead consumer of this host was running it; dead-letter it at
        ``max_deliveries`` crashes (True: it must not be handed out). Consumer thread."""
        mid = d.id
        d.crashes, reason = self._crashes.redelivered(mid, self.max_crashes)
        if not d.crashes:
            return False
        d.delivery_count = max(d.delivery_count, d.crashes + 1)
        if reason is None:
            return False
        self.log.error("message %s dead-lettered: %s", mid, reason)
        try:
            self._send(self.dlq, d.body, {H_ID: mid, H_REASON: reason, H_FAILED_AT: int(time.time() * 1000)})
        except BrokerUnavailable:  # keep it unacked: the transport redelivers it
            return True
        _, message = d.tag
        message.ack()
        self._crashes.forget(mid)
        return True

    def _hold(self, d: Delivery, due: float) -> None:
        """Keep a not-yet-due copy (unacked) until ``due``; past half the prefetch window, send the one due
        last to the back of the queue (consumer thread)."""
        self._wseq += 1
        heapq.heappush(self._waiting, (due, self._wseq, d))
        if len(self._waiting) <= max(1, self.prefetch // 2):
            return
        latest = max(self._waiting, key=lambda w: w[0])
        self._waiting.remove(latest)
        heapq.heapify(self._waiting)
        _, _, moved = latest
        _, message = moved.tag
        try:
            self._send(self.q, moved.body, dict(message.headers or {}))
        except BrokerUnavailable:  # keep it unacked: the transport redelivers it
            self.log.debug("could not move delayed message %s to the back of the queue", moved.id)
            return
        message.ack()

    def _release_due(self) -> None:
        now = time.time()
        due = []
        while self._waiting and self._waiting[0][0] <= now:
            due.append(heapq.heappop(self._waiting)[2])
        if due:
            with self._cond:
                self._buf.extend(due)
                self._cond.notify()

    def _run_ops(self) -> None:
        ops = self._ops
        while ops:
            fn = ops.popleft()
            try:
                fn()
            except Exception:  # noqa: BLE001 - e.g. an ack on a connection that just died
                self.log.debug("kombu settle failed (the message will be redelivered)", exc_info=True)

    def buffered(self) -> int:
        """Deliveries the transport gave this consumer (``prefetch_count``) that :meth:`fetch` has not
        returned yet, plus not-yet-due copies held unacked (module doc): in flight for the transport (RabbitMQ's
        unacked, redis's unacked hash), so ``count()`` and ``purge()`` leave them alone, and they go back to the
        queue when this consumer closes (after the ``visibility_timeout`` on redis when it dies)."""
        return len(self._buf) + len(self._waiting)

    def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        if self._closed:
            return []
        if self._thread is None:
            self._start()
        got = self.take_buffered(self._buf, self._cond, max_messages, timeout)
        if not got and not self._ever_ready and self._first_attempt.is_set():
            raise BrokerUnavailable(f"cannot consume from {mask_url(self.kurl)}: {self._last_error}")
        return got

    def _settle(self, d: Delivery, action: str) -> None:
        gen, message = d.tag
        if gen != self._gen or not self._ready:
            return  # from a connection that has gone: dropped, the transport redelivers
        if action == "ack":
            message.ack()
        elif action == "requeue":
            message.requeue()
        else:
            message.reject()

    def _submit(self, d: Delivery, action: str) -> None:
        if self._closed or self._thread is None:
            return
        self._ops.append(lambda: self._settle(d, action))

    def started(self, delivery: Delivery) -> None:
        """Record that this delivery runs now: one write(2) to this consumer's journal (see the module doc)."""
        self.journal.started(delivery.id)

    def _finished(self, d: Delivery) -> None:
        self.journal.finished(d.id)
        if d.crashes:
            self._crashes.forget(d.id)

    def ack(self, delivery: Delivery) -> None:
        self._finished(delivery)
        self._submit(delivery, "ack")

    def ack_many(self, deliveries: Iterable[Delivery]) -> None:
        for d in deliveries:
            self._finished(d)
            self._submit(d, "ack")

    def nack(self, delivery: Delivery, requeue: bool = True, delay: float = 0.0) -> None:
        """Requeue (after ``delay`` seconds) or drop the message.

        A requeue publishes a copy with its requeue count (transports disagree on the ``redelivered`` flag)
        and, with ``delay``, its due time (see the module doc), then acks the original; if the copy cannot be
        published the transport's own requeue is used (at once).
        """
        self.journal.finished(delivery.id)  # handed back: a death from now on is not its doing
        if not requeue:
            self._submit(delivery, "reject")
            return
        gen, message = delivery.tag
        headers = dict(message.headers or {})
        headers[H_ID] = delivery.id
        headers[H_REQUEUES] = int(headers.get(H_REQUEUES, 0)) + 1
        if delay > 0:
            headers[H_ETA] = int((time.time() + delay) * 1000) + 1
        else:
            headers.pop(H_ETA, None)
        try:
            self._send(self.q, delivery.body, headers)
        except BrokerUnavailable:
            self._submit(delivery, "requeue")
            return
        self.ack(delivery)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Publish to ``<queue>.dlq`` with the reason, then ack the original (at-least-once)."""
        self._send(self.dlq, delivery.body, {H_ID: delivery.id, H_REASON: reason,
                                            H_FAILED_AT: int(time.time() * 1000)})
        self.ack(delivery)

    # --- lifecycle --------------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)
        with self._plock:
            self._drop_pconn()
        self.journal.close()

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(transport=self.transport_name, prefetch=self.prefetch)
        return d
