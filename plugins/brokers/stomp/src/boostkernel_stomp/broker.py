"""The STOMP broker (stomp.py), written and tested against Apache ActiveMQ Classic 5.x.

Connections (stomp.py sends frames under a socket lock, so any thread may send; frames are received
on stomp.py's own receiver thread, which also services heart-beats, so long tasks never lose the
connection):

* **consumer** - ``SUBSCRIBE`` with ``ack:client-individual`` and a prefetch window
  (``activemq.prefetchSize``; ``prefetch-count`` for RabbitMQ's STOMP plugin). Messages pushed by the
  server fill a buffer that :meth:`StompBroker.fetch` drains. ``ack`` sends ``ACK`` with the message's
  ``ack`` id on that same connection; an ack for a connection that has gone is dropped (the server
  redelivers the message). When the connection closes - ``close()``, a crash, a cut - the server puts
  every unacked message back, flagged ``redelivered``. The ``ACK`` frames are built here (the bytes
  stomp.py's ``Connection12.ack`` would send) and written by :class:`_AckWriter`: a thread that finds no
  write in progress writes its frames and then every frame other threads queued meanwhile, in the order
  they were queued, one ``sendall`` per turn under stomp.py's socket lock; the others return at once.
  ``ack_many`` is one write. No ack waits for a later one (nothing is held back), and ``close()`` waits
  for the writes in progress before it disconnects.
* **publisher** - ``SEND`` with ``persistent:true`` and a ``receipt``: :meth:`publish` returns once the
  server acknowledged the frame. ``publish_many`` sends the batch inside a STOMP transaction and waits
  for the receipt of its ``COMMIT`` (one round trip for the batch).
* **admin** - a short-lived connection for the rare operations: count, purge and the dead-letter queue.

``count()`` asks ActiveMQ's statistics plugin (``<statisticsBrokerPlugin/>``): a ``SEND`` to
``/queue/ActiveMQ.Statistics.Destination.<queue>`` with a ``reply-to`` temporary queue, subscribed with
``transformation:jms-map-json``, is answered with the destination's counters as a map message; the waiting
messages are ``size`` (stored and not acked) minus ``inflightCount`` (dispatched to a consumer and not
acked: fetched, or in a prefetch window). Both the plugin and the map transformation (XStream and Jettison
on the server's class path) must be there; when the server does not answer (no plugin: the request is
an ordinary message, sent non-persistent and expiring in a minute) or drops the connection (no XStream),
``count()`` falls back to a queue browser, which lists the in-flight messages too, and remembers that for
ten minutes (``count_with="statistics"`` raises instead; ``"browser"`` never asks the plugin).

Settling a message differently from a plain ack is one STOMP transaction on the consumer connection
(``BEGIN``, ``SEND`` the copy, ``ACK`` the original, ``COMMIT``), so the copy and the ack are atomic:

* ``nack(requeue=True, delay=d)`` sends a copy back to the queue with header ``bk-requeues`` + 1 and,
  when ``d > 0``, ``AMQ_SCHEDULED_DELAY`` (ActiveMQ's scheduler holds it: ``schedulerSupport="true"``);
  STOMP's own ``NACK`` is not used (ActiveMQ treats it as a poison ack and moves the message to its
  ``DLQ.<queue>``);
* ``dead_letter`` sends it to ``<queue>.dlq`` with headers ``bk-reason`` and ``bk-failed-at``;
* crash loops: the server's ``redelivered`` flag cannot tell a running message from a prefetched one,
  so the kernel's ``started`` is written to this consumer's running journal
  (:mod:`boostkernel.journal`); a delivery flagged ``redelivered`` that a dead consumer's journal lists as
  running is replaced by a copy with ``bk-crashes`` + 1, or, at ``max_deliveries`` crashes, dead-lettered
  with reason ``crash-loop``. Prefetched bystanders are in no journal and run normally.

Reconnection: a lost connection is noticed by the receiver thread; the next fetch or publish connects
again (the kernel's consume loop retries ``BrokerUnavailable`` with capped backoff and jitter).
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

try:
    import stomp  # type: ignore[import-untyped]
    import stomp.exception  # type: ignore[import-untyped]
    import stomp.utils  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(f'the stomp broker needs stomp.py ({exc}): pip install "boostkernel[stomp]"') from exc

from boostkernel.broker import Broker, BrokerCapabilities, DeadLetterRecord, Delivery, Outgoing, consumer_window
from boostkernel.errors import BrokerUnavailable, ConfigError
from boostkernel.journal import CrashCharges, RunningJournal, consumer_id, crash_loop_reason, host_journal_dir
from boostkernel.logs import mask, mask_url

from ._common import StompSettings, parse_url

H_ID, H_REASON, H_FAILED_AT, H_QUEUE = "bk-id", "bk-reason", "bk-failed-at", "bk-queue"
H_REQUEUES, H_CRASHES, H_DELAY = "bk-requeues", "bk-crashes", "AMQ_SCHEDULED_DELAY"
_KEEP = (H_ID, H_REQUEUES, H_CRASHES, "priority", "content-type")
STATS_DEST = "/queue/ActiveMQ.Statistics.Destination."
STATS_END = "ActiveMQ.Statistics.Destination.List.End.With.Null"  # the plugin ends its replies with an empty map
NO_STATS_RETRY = 600.0  # a server that did not answer the statistics request is asked again after this
_no_stats: dict[tuple[str, int, str | None], float] = {}  # server -> time.monotonic() of its last non-answer

log = logging.getLogger("boostkernel.stomp")


def ack_frame(ack_id: str) -> bytes:
    """The STOMP 1.2 ``ACK`` frame of ``ack_id``, byte for byte what stomp.py's ``Connection12.ack(ack_id)``
    sends: the header value escaped (backslash, newline, colon, carriage return), no body."""
    v = ack_id.replace("\\", "\\\\").replace("\n", "\\n").replace(":", "\\c").replace("\r", "\\r")
    return b"ACK\nid:" + v.encode("utf-8", "replace") + b"\n\n\x00"


_ESCAPED = re.compile(r"\\.")
_parse_frame = stomp.utils.parse_frame
_unescape = stomp.utils._unescape_header


def parse_frame(frame: bytes) -> Any:
    """``stomp.utils.parse_frame(frame)``, the same ``Frame``, at a fraction of its cost for the frames
    ActiveMQ sends (lines ending in ``\\n``, no leading newline): one ``split`` and a ``partition`` per
    header line instead of a regular expression match and two substitutions per header. Any other frame is
    left to stomp.py's own parser."""
    end = frame.find(b"\n\n")
    if end <= 0 or frame[0] == 10 or b"\r" in frame[:end]:  # 10: a leading newline
        return _parse_frame(frame)
    lines = frame[:end].decode("utf-8", "replace").split("\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        key, sep, value = line.partition(":")
        if not sep or not key:
            continue  # stomp.py skips a line without a key and a colon
        if "\\" in line:
            if "\\\\" in line:  # an escaped backslash: escapes must be read left to right
                key, value = _ESCAPED.sub(_unescape, key), _ESCAPED.sub(_unescape, value)
            else:  # every backslash starts an escape and no replacement makes one: replacing is the same
                key = key.replace("\\c", ":").replace("\\n", "\n").replace("\\r", "\r")
                value = value.replace("\\c", ":").replace("\\n", "\n").replace("\\r", "\r")
        if key not in headers:  # the first of repeated headers wins (STOMP 1.2)
            headers[key] = value
    return stomp.utils.Frame(lines[0], headers, frame[end + 2:])


def _read_frames(transport: Any) -> None:
    """stomp.py's ``BaseTransport.__read_frames`` (9.0: read the socket, parse each frame, hand it to the
    listeners) with :func:`parse_frame`; installed on our connections' transports only."""
    is_eol = transport._BaseTransport__is_eol
    for frame in transport._BaseTransport__read():
        f = stomp.utils.HEARTBEAT_FRAME if is_eol(frame) else parse_frame(frame)
        if f is None:
            continue
        if transport._BaseTransport__auto_decode:
            f.body = stomp.utils.decode(f.body)
        transport.process_frame(f, frame)


def _stomp_major() -> int:
    v = getattr(stomp, "__version__", "")
    try:
        return int(v[0] if isinstance(v, tuple) else str(v).split(".")[0])
    except (ValueError, IndexError):
        return 0


FAST_PARSING = _stomp_major() == 9  # the stomp.py whose __read_frames _read_frames copies (tested: 9.0)


def _fast_parsing(conn: Any) -> None:
    """Make ``conn``'s receiver thread parse with :func:`_read_frames` (an instance attribute shadows the
    name-mangled method the receiver loop calls); another stomp.py major version, or one without those
    internals, keeps its own."""
    t = conn.transport
    if FAST_PARSING and all(hasattr(t, "_BaseTransport__" + a) for a in ("read_frames", "read", "is_eol",
                                                                            "auto_decode")):
        t._BaseTransport__read_frames = functools.partial(_read_frames, t)


class _AckWriter:
    """The ``ACK`` frames of one connection (one ``generation`` of a :class:`_Link`). :meth:`write` queues
    frames; the calling thread writes them itself unless another thread is writing, in which case that
    thread writes them after its current ``sendall`` (flat combining: the queue is drained in order, each
    turn one ``sendall`` of everything queued). A failed write drops what was queued: the connection is
    gone and the server redelivers those messages. stomp.py's listeners do not see these frames: its
    heart-beat listener, which only postpones the next heart-beat after a send, may send one (an end of
    line) that it could have skipped."""

    __slots__ = ("transport", "generation", "_pending", "_lock", "_idle", "_writing")

    def __init__(self, transport: Any, generation: int) -> None:
        self.transport, self.generation = transport, generation
        self._pending: list[bytes] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._writing = False

    def write(self, frames: list[bytes]) -> None:
        """Queue ``frames`` (in this order, after every frame queued before); write them unless another
        thread is writing. Raises what the socket raised if this thread wrote and the write failed."""
        with self._lock:
            self._pending += frames
            if self._writing:
                return
            self._writing = True
        try:
            while True:
                with self._lock:
                    pending = self._pending
                    if not pending:
                        self._writing = False
                        self._idle.notify_all()
                        return
                    self._pending = []
                data = pending[0] if len(pending) == 1 else b"".join(pending)
                t = self.transport
                if t.blocking:
                    t.send(data)  # stomp.py's socket lock: never interleaved with its own frames
                else:  # TLS: stomp.py's I/O thread writes (what transmit() does)
                    t.send_queue.put(data)
        except BaseException:
            with self._lock:
                self._pending = []
                self._writing = False
                self._idle.notify_all()
            raise

    def flush(self, timeout: float) -> bool:
        """Wait until no thread is writing (what was queued went out or was dropped); False on timeout."""
        with self._lock:
            return self._idle.wait_for(lambda: not self._writing, timeout)


def default_window(params: Any) -> int:
    """The prefetch window when ``broker_options`` sets none: the booster's ``prefetch`` if given, else
    running + prefetched tasks, at least 100 (direct use and the contract suite: 256); see
    :func:`boostkernel.broker.consumer_window`."""
    return consumer_window(params, 100, unbound=256)


class _Listener(stomp.ConnectionListener):  # type: ignore[misc]
    def __init__(self, link: _Link) -> None:
        self.link = link

    def on_message(self, frame: Any) -> None:
        cb = self.link.on_message
        if cb is not None:
            cb(self.link, frame)

    def on_receipt(self, frame: Any) -> None:
        self.link.settle_receipt(frame.headers.get("receipt-id", ""), None)

    def on_error(self, frame: Any) -> None:
        msg = frame.headers.get("message", "ERROR frame")
        self.link.error = mask(f"{msg}: {frame.body[:300]!r}")
        rid = frame.headers.get("receipt-id")
        if rid:
            self.link.settle_receipt(rid, self.link.error)
        self.link.log.warning("STOMP server error: %s", self.link.error)

    def on_disconnected(self) -> None:
        self.link.lost("disconnected")


class _Link:
    """One stomp.py connection; ``generation`` grows each time it connects again."""

    def __init__(self, s: StompSettings, role: str, log: logging.Logger,
                 on_message: Callable[[_Link, Any], None] | None = None,
                 on_connect: Callable[[_Link], None] | None = None,
                 on_lost: Callable[[_Link], None] | None = None) -> None:
        self.s, self.role, self.log = s, role, log
        self.on_message, self.on_connect, self.on_lost = on_message, on_connect, on_lost
        self.conn: Any = None
        self.connected = False
        self.generation = 0
        self.error: str | None = None
        self.lock = threading.RLock()
        self._receipts: dict[str, list[Any]] = {}  # id -> [event, error]
        self._rlock = threading.Lock()
        self.collectors: dict[str, _Collector] = {}
        self.acks: _AckWriter | None = None  # the ACK writer of the live connection

    def ensure(self) -> Any:
        """The connected stomp.py connection; connects (once) if needed, else raises BrokerUnavailable."""
        conn = self.conn
        if conn is not None and self.connected:
            return conn
        with self.lock:
            if self.conn is not None and self.connected:
                return self.conn
            self._drop()
            s = self.s
            conn = stomp.Connection12([(s.host, s.port)], heartbeats=(s.heartbeat_ms, s.heartbeat_ms),
                                      auto_decode=False, reconnect_attempts_max=1, timeout=s.connect_timeout,
                                      vhost=s.vhost, keepalive=True)
            if s.ssl:
                conn.set_ssl([(s.host, s.port)])
            conn.set_listener("bk", _Listener(self))
            _fast_parsing(conn)
            try:
                conn.connect(s.user, s.password, wait=True)
            except Exception as exc:  # noqa: BLE001 - any failure: unavailable, retried by the caller
                try:
                    conn.disconnect()
                except Exception:  # noqa: BLE001
                    pass
                raise BrokerUnavailable(f"cannot connect to STOMP server {mask_url(s.url)} ({self.role}): "
                                        f"{mask(str(exc) or type(exc).__name__)}") from None
            self.conn = conn
            self.generation += 1
            self.acks = _AckWriter(conn.transport, self.generation)
            self.connected = True
            self.error = None
            if self.on_connect is not None:
                self.on_connect(self)
            return conn

    def lost(self, reason: str) -> None:
        if not self.connected:
            return
        self.connected = False
        with self._rlock:
            waiting, self._receipts = self._receipts, {}
        for ev_err in waiting.values():
            ev_err[1] = f"connection lost ({reason})"
            ev_err[0].set()
        if self.on_lost is not None:
            self.on_lost(self)

    def _drop(self) -> None:
        conn, self.conn = self.conn, None
        self.connected = False
        if conn is not None:
            try:
                conn.disconnect()
            except Exception:  # noqa: BLE001 - already gone
                pass

    def close(self) -> None:
        with self.lock:
            conn, self.conn = self.conn, None
            was = self.connected
            self.connected = False
            if conn is not None:
                try:
                    if was:
                        conn.disconnect(receipt=None)
                    else:
                        conn.transport.stop()
                except Exception:  # noqa: BLE001
                    pass

    def new_receipt(self) -> tuple[str, list[Any]]:
        rid = uuid.uuid4().hex
        entry: list[Any] = [threading.Event(), None]
        with self._rlock:
            self._receipts[rid] = entry
        return rid, entry

    def settle_receipt(self, rid: str, error: str | None) -> None:
        with self._rlock:
            entry = self._receipts.pop(rid, None)
        if entry is not None:
            entry[1] = error
            entry[0].set()

    def wait_receipt(self, entry: list[Any], timeout: float) -> None:
        if not entry[0].wait(timeout):
            raise BrokerUnavailable(f"no receipt from the STOMP server {mask_url(self.s.url)} within {timeout}s")
        if entry[1] is not None:
            raise BrokerUnavailable(f"STOMP server {mask_url(self.s.url)}: {entry[1]}")


class StompBroker(Broker):
    """A STOMP queue (tested against ActiveMQ). At-least-once: client-individual ack after execution,
    persistent messages confirmed by receipts, atomic requeue / dead-letter in STOMP transactions."""

    name = "stomp"
    capabilities = BrokerCapabilities(priority=True, delay=True, durable=True, batch_publish=True,
                                      recovery_seconds=5.0)
    default_url = "stomp://127.0.0.1:61613"

    check_at_decoration = True  # __init__ checks the URL and options and does not connect

    def __init__(self, queue: str, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(queue, url, params, **options)
        o = self.options
        self.settings = parse_url(self.url or self.default_url, o)
        s = self.settings
        self.prefetch = int(o.get("prefetch", default_window(params)))
        if self.prefetch < 1:
            raise ConfigError(f"broker_options prefetch={self.prefetch!r}: must be >= 1")
        self.dest = s.prefix + queue
        self.dlq_dest = s.prefix + queue + s.dlq_suffix
        self.owner = consumer_id()
        self.journal_dir = host_journal_dir("stomp-" + queue)
        self.journal = RunningJournal(self.journal_dir, self.owner)
        # the server redelivers a message only after the connection that held it closed, so the consumer
        # whose journal lists it lost it: it died (or, rarely, its connection dropped while it kept running)
        self._crashes = CrashCharges(self.journal_dir, self.owner, live_too=True)
        self._closed = False
        self._lock = threading.Lock()
        self._buf: collections.deque[Delivery] = collections.deque()
        self._cond = threading.Condition()
        self._pub = _Link(s, "publisher", self.log)
        self._con: _Link | None = None
        self._sub_id = "bk-" + uuid.uuid4().hex[:8]

    # --- publishing -------------------------------------------------------------------------------
    def _headers(self, m: Outgoing, now: float) -> dict[str, str]:
        h = {"persistent": "true", H_ID: m.id, "content-type": "application/json"}
        if m.priority:
            h["priority"] = str(max(0, min(9, m.priority)))
        if m.eta is not None and m.eta - now > 0.0005 and self.settings.delay_header:
            h[self.settings.delay_header] = str(max(1, int((m.eta - now) * 1000)))
        return h

    def _send(self, messages: Sequence[Outgoing]) -> None:
        conn = self._pub.ensure()
        now = time.time()
        rid, entry = self._pub.new_receipt()
        if len(messages) == 1:
            m = messages[0]
            conn.send(self.dest, m.body, headers=self._headers(m, now), receipt=rid)
        else:
            tx = uuid.uuid4().hex
            conn.begin(tx)
            for m in messages:
                h = self._headers(m, now)
                h["transaction"] = tx
                conn.send(self.dest, m.body, headers=h)
            conn.commit(tx, headers={"receipt": rid})
        self._pub.wait_receipt(entry, self.settings.publish_timeout)

    def _publish(self, messages: Sequence[Outgoing]) -> None:
        if self._closed:
            raise BrokerUnavailable(f"stomp broker for queue {self.queue!r} is closed")
        try:
            self._send(messages)
        except (BrokerUnavailable, stomp.exception.StompException, OSError) as exc:
            # the connection may have dropped under us: connect again and send once more (at-least-once)
            self.log.debug("publish failed (%s); reconnecting", exc)
            self._pub.lost(str(exc))
            self._send(messages)

    def publish(self, message: Outgoing) -> None:
        """Send one persistent message and wait for the server's receipt."""
        self._publish((message,))

    def publish_many(self, messages: Sequence[Outgoing]) -> None:
        """Send the batch in one STOMP transaction (slices of ``publish_batch``), each confirmed by the
        receipt of its ``COMMIT``."""
        step = self.settings.publish_batch
        for i in range(0, len(messages), step):
            self._publish(messages[i:i + step])

    # --- consuming --------------------------------------------------------------------------------
    def _consumer(self) -> _Link:
        link = self._con
        if link is None:
            with self._lock:
                if self._con is None:
                    self._crashes.sweep()
                    self.journal.open()
                    self._con = _Link(self.settings, "consumer", self.log, self._on_message, self._subscribe,
                                      self._con_lost)
                link = self._con
        return link

    def _subscribe(self, link: _Link) -> None:
        link.conn.subscribe(self.dest, id=self._sub_id, ack="client-individual",
                            headers={"activemq.prefetchSize": str(self.prefetch),
                                     "prefetch-count": str(self.prefetch)})

    def _con_lost(self, link: _Link) -> None:
        with self._cond:
            self._buf.clear()  # the server redelivers them; their ack ids belong to the dead connection
            self._cond.notify_all()
        if not self._closed:
            self.log.warning("STOMP consumer connection lost; reconnecting at the next fetch")

    def _on_message(self, link: _Link, frame: Any) -> None:
        h = frame.headers
        mid = h.get(H_ID) or h.get("message-id", "")
        redelivered = h.get("redelivered") == "true"
        crashes = int(h.get(H_CRASHES, 0) or 0)
        requeues = int(h.get(H_REQUEUES, 0) or 0)
        if redelivered and mid:
            owner = self._crashes.running_owner(mid)
            if owner is not None:
                self._charge_crash(link, frame, mid, owner, crashes + 1)
                return
        body = frame.body if isinstance(frame.body, bytes) else str(frame.body).encode()
        d = Delivery(mid, body, (link.generation, h.get("ack") or h.get("message-id")),
                     1 + int(redelivered) + requeues + crashes, {"headers": h}, crashes)
        with self._cond:
            self._buf.append(d)
            self._cond.notify()

    def _charge_crash(self, link: _Link, frame: Any, mid: str, owner: str, crashes: int) -> None:
        """A dead consumer was running this delivery: replace it by a copy counting the crash, or
        dead-letter a crash loop - one transaction with the ack of the original (receiver thread)."""
        self._crashes.discharge(owner, mid)  # charged once: its journal no longer lists it as running
        h = frame.headers
        headers = {k: h[k] for k in _KEEP if k in h}
        headers["persistent"] = "true"
        if crashes >= self.max_crashes:
            reason = crash_loop_reason(crashes, owner)
            self.log.error("message %s dead-lettered: %s", mid, reason)
            headers.update({H_REASON: reason, H_FAILED_AT: str(int(time.time() * 1000)), H_QUEUE: self.queue})
            dest = self.dlq_dest
        else:
            headers[H_CRASHES] = str(crashes)
            dest = self.dest
        try:
            self._in_tx(link.conn, dest, frame.body, headers, h.get("ack") or h.get("message-id"), None)
        except Exception as exc:  # noqa: BLE001 - the connection went: the message comes back uncharged
            self.log.warning("could not count the crash of message %s (%s)", mid, exc)

    def _in_tx(self, conn: Any, dest: str, body: Any, headers: dict[str, str], ack_id: str,
               receipt: str | None) -> None:
        """``SEND`` a copy and ``ACK`` the original atomically (one STOMP transaction)."""
        tx = uuid.uuid4().hex
        conn.begin(tx)
        conn.send(dest, body, headers={**headers, "transaction": tx})
        conn.ack(ack_id, transaction=tx)
        conn.commit(tx, headers={"receipt": receipt} if receipt else {})

    def buffered(self) -> int:
        """Messages the server dispatched to this subscription (its ``activemq.prefetchSize`` window) that
        :meth:`fetch` has not returned yet: unacked (in ActiveMQ's ``inflightCount``, not in ``count()``;
        its queue browser still lists them), so ``purge()`` cannot reach them, and they go back when this
        consumer closes or dies."""
        return len(self._buf)

    def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        if self._closed:
            return []
        link = self._con or self._consumer()
        if not link.connected:
            link.ensure()  # raises BrokerUnavailable: the consume loop retries with backoff
            self.journal.touch()
        return self.take_buffered(self._buf, self._cond, max_messages, timeout)

    def _current(self, delivery: Delivery) -> Any:
        """The consumer connection if the delivery belongs to it, else ``None`` (a stale settle)."""
        link = self._con
        if link is None or not link.connected or self._closed:
            return None
        return link.conn if self.same_generation(delivery, link.generation, self.log) else None

    def started(self, delivery: Delivery) -> None:
        """Record that this delivery runs now: one write(2) to this consumer's journal (module doc)."""
        self.journal.started(delivery.id)

    def _ack_writer(self) -> _AckWriter | None:
        link = self._con
        if link is None or not link.connected or self._closed:
            return None
        return link.acks

    def ack(self, delivery: Delivery) -> None:
        """``ACK`` on the connection that delivered it (queued behind a write in progress: module doc)."""
        self.journal.finished(delivery.id)
        w = self._ack_writer()
        if w is None or not self.same_generation(delivery, w.generation, self.log):
            return
        try:
            w.write([ack_frame(delivery.tag[1])])
        except Exception as exc:  # noqa: BLE001 - connection gone: the server redelivers it
            self.log.debug("ack of %s not sent (%s)", delivery.id, exc)

    def ack_many(self, deliveries: Iterable[Delivery]) -> None:
        """The ``ACK`` frames of all ``deliveries`` of the live connection in one write, in their order."""
        finished = self.journal.finished
        w = self._ack_writer()
        frames = []
        for d in deliveries:
            finished(d.id)
            if w is not None and self.same_generation(d, w.generation, self.log):
                frames.append(ack_frame(d.tag[1]))
        if w is None or not frames:
            return
        try:
            w.write(frames)
        except Exception as exc:  # noqa: BLE001 - connection gone: the server redelivers them
            self.log.debug("acks of %d messages not sent (%s)", len(frames), exc)

    def _settle_copy(self, delivery: Delivery, dest: str, headers: dict[str, str], what: str) -> None:
        conn = self._current(delivery)
        if conn is None:
            return
        link = self._con
        assert link is not None
        rid, entry = link.new_receipt()
        try:
            self._in_tx(conn, dest, delivery.body, headers, delivery.tag[1], rid)
            link.wait_receipt(entry, self.settings.publish_timeout)
        except Exception as exc:  # noqa: BLE001 - not committed: the original is redelivered
            self.log.warning("message %s not %s yet (%s); it will be redelivered", delivery.id, what, exc)

    def _copy_headers(self, delivery: Delivery) -> dict[str, str]:
        h = delivery.extra.get("headers") or {}
        out = {k: h[k] for k in _KEEP if k in h}
        out.setdefault(H_ID, delivery.id)
        out["persistent"] = "true"
        return out

    def nack(self, delivery: Delivery, requeue: bool = True, delay: float = 0.0) -> None:
        """Requeue: a copy (``bk-requeues`` + 1, delayed by the scheduler if ``delay``) and the ack of the
        original, in one transaction. Without requeue the message is dropped (acked)."""
        self.journal.finished(delivery.id)
        if not requeue:
            self.ack(delivery)
            return
        headers = self._copy_headers(delivery)
        headers[H_REQUEUES] = str(int(headers.get(H_REQUEUES, 0) or 0) + 1)
        if delay > 0 and self.settings.delay_header:
            headers[self.settings.delay_header] = str(max(1, int(delay * 1000)))
        self._settle_copy(delivery, self.dest, headers, "requeued")

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Send to ``<queue>.dlq`` with the reason header and ack the original, in one transaction."""
        self.journal.finished(delivery.id)
        headers = self._copy_headers(delivery)
        headers.update({H_REASON: reason, H_FAILED_AT: str(int(time.time() * 1000)), H_QUEUE: self.queue})
        self._settle_copy(delivery, self.dlq_dest, headers, "dead-lettered")

    # --- admin: count, purge, dead letters --------------------------------------------------------
    def _admin(self) -> _Link:
        link = _Link(self.settings, "admin", self.log)
        link.on_message = _Collector.dispatch
        link.ensure()
        return link

    def _browse(self, dest: str, limit: int | None = None) -> list[Any]:
        """Every message of ``dest`` (a queue browser: nothing is consumed; in-flight ones included)."""
        link = self._admin()
        try:
            col = _Collector(link, dest, ack="auto", browser=True)
            return col.until_end(self.settings.publish_timeout, limit)
        finally:
            link.close()

    def _drain(self, dest: str, keep: Callable[[Any], bool] | None = None,
               then: Callable[[_Link, Any], None] | None = None) -> int:
        """Consume what ``dest`` holds until nothing arrives for ``drain_idle`` seconds; ``then`` settles each
        message (default: acked = deleted). Messages not acked go back when the connection closes."""
        if not self._browse(dest, 1):
            return 0  # empty: no need to wait out the idle time
        link = self._admin()
        n = 0
        try:
            col = _Collector(link, dest, ack="client-individual", prefetch=500)
            for frame in col.frames(self.settings.drain_idle):
                if keep is not None and not keep(frame):
                    continue
                if then is not None:
                    then(link, frame)
                else:
                    link.conn.ack(frame.headers["ack"])
                n += 1
            rid, entry = link.new_receipt()
            link.conn.unsubscribe(col.sub_id, headers={"receipt": rid})
            link.wait_receipt(entry, self.settings.publish_timeout)
        finally:
            link.close()
        return n

    def count(self) -> int:
        """Messages waiting in the queue: ActiveMQ's statistics plugin's ``size - inflightCount`` (module
        doc); neither counts the delayed messages its scheduler holds. Without the plugin (``count_with``
        ``auto``): the queue browser, which also lists the messages dispatched to consumers and not acked
        yet, and at most the destination's ``maxBrowsePageSize`` (400 by default)."""
        s = self.settings
        server = (s.host, s.port, s.vhost)
        if s.count_with != "browser" and self.dest.startswith("/queue/"):
            failed = _no_stats.get(server)
            if s.count_with == "statistics" or failed is None or time.monotonic() - failed > NO_STATS_RETRY:
                n, why = self._count_statistics(self.dest[len("/queue/"):])
                if n is not None:
                    _no_stats.pop(server, None)
                    return n
                if s.count_with == "statistics":
                    raise BrokerUnavailable(f"count(): ActiveMQ's statistics plugin on {mask_url(s.url)} did not "
                                            f"answer ({why})")
                _no_stats[server] = time.monotonic()
                self.log.warning("count(): ActiveMQ's statistics plugin on %s did not answer (%s): counting with "
                                 "a queue browser, which includes in-flight messages (docs/brokers/stomp.md)",
                                 mask_url(s.url), why)
        return len(self._browse(self.dest))

    def _count_statistics(self, name: str) -> tuple[int | None, str]:
        """``(size - inflightCount, "")`` of queue ``name`` from the statistics plugin, 0 for a queue the
        server does not know, or ``(None, why)`` when the server did not answer. Raises BrokerUnavailable
        when it cannot be reached at all."""
        link = self._admin()
        try:
            reply = "/temp-queue/bk-stats-" + uuid.uuid4().hex[:12]
            col = _Collector(link, reply, ack="auto", headers={"transformation": "jms-map-json"})
            rid, entry = link.new_receipt()
            link.conn.send(STATS_DEST + name, b"", headers={
                "reply-to": reply, STATS_END: "true", "persistent": "false", "receipt": rid,
                "expires": str(int((time.time() + 60) * 1000))})  # an unanswered request does not stay
            link.wait_receipt(entry, self.settings.publish_timeout)
            frames = col.until(lambda f: not _stats_map(f.body), self.settings.stats_timeout)
        except (BrokerUnavailable, stomp.exception.StompException, OSError, ValueError) as exc:
            return None, mask(str(exc) or type(exc).__name__)
        finally:
            link.close()
        for f in frames:
            m = _stats_map(f.body)
            if m.get("destinationName") == "queue://" + name:
                return max(0, int(m.get("size", 0)) - int(m.get("inflightCount", 0))), ""
        return 0, ""  # only the end marker: no such queue (yet)

    def purge(self) -> int:
        """Consume and delete the messages waiting in the queue (those dispatched to other consumers are
        not delivered to the purger and stay)."""
        return self._drain(self.dest)

    def dead_letters(self, limit: int = 100) -> list[DeadLetterRecord]:
        out = []
        for f in self._browse(self.dlq_dest, limit):
            h = f.headers
            body = f.body if isinstance(f.body, bytes) else str(f.body).encode()
            out.append(DeadLetterRecord(h.get(H_ID) or h.get("message-id", ""), body, h.get(H_REASON, ""),
                                        int(h.get(H_FAILED_AT, 0) or 0) / 1000.0))
        return out

    def replay_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        """Move dead letters (all, or those with ``ids``) back to the queue: copy and ack in one transaction."""
        wanted = set(ids) if ids is not None else None

        def keep(frame: Any) -> bool:
            return wanted is None or (frame.headers.get(H_ID) or frame.headers.get("message-id")) in wanted

        def move(link: _Link, frame: Any) -> None:
            h = frame.headers
            headers = {k: h[k] for k in (H_ID, "priority", "content-type") if k in h}
            headers["persistent"] = "true"
            self._in_tx(link.conn, self.dest, frame.body, headers, h["ack"], None)

        return self._drain(self.dlq_dest, keep, move)

    def purge_dead_letters(self) -> int:
        return self._drain(self.dlq_dest)

    # --- lifecycle --------------------------------------------------------------------------------
    def close(self) -> None:
        """Unsubscribe and disconnect: the server puts unacked deliveries back at once. Idempotent."""
        if self._closed:
            return
        self._closed = True
        con = self._con
        if con is not None:
            w = con.acks
            if w is not None and not w.flush(self.settings.publish_timeout):
                self.log.warning("acks still being written at close(): those messages may be redelivered")
            con.close()
        self._pub.close()
        with self._cond:
            self._buf.clear()
            self._cond.notify_all()
        self.journal.close()

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(prefetch=self.prefetch, destination=self.dest, dlq=self.dlq_dest)
        return d


def _stats_map(body: Any) -> dict[str, Any]:
    """The entries of a map message in ActiveMQ's ``jms-map-json`` form (XStream + Jettison:
    ``{"map": {"entry": [{"string": "size", "long": 3}, {"string": ["destinationName", "queue://q"]}]}}``,
    ``{"map": ""}`` when empty). Raises ValueError when the body is not that."""
    data = json.loads(body)
    if not isinstance(data, dict) or "map" not in data:
        raise ValueError(f"not a jms-map-json body: {str(body)[:200]!r}")
    entries = data["map"].get("entry", []) if isinstance(data["map"], dict) else []
    out: dict[str, Any] = {}
    for e in entries if isinstance(entries, list) else [entries]:
        key = e.get("string")
        if isinstance(key, list) and len(key) == 2:  # a string value: both under "string"
            out[str(key[0])] = key[1]
        elif isinstance(key, str):
            out[key] = next((v for k, v in e.items() if k != "string"), None)
    return out


class _Collector:
    """Frames of one admin subscription, handed from the receiver thread to the caller."""

    def __init__(self, link: _Link, dest: str, ack: str, browser: bool = False, prefetch: int = 1000,
                 headers: dict[str, str] | None = None) -> None:
        self.link = link
        self.sub_id = uuid.uuid4().hex[:12]
        self.q: collections.deque[Any] = collections.deque()
        self.cond = threading.Condition()
        self.ended = False
        link.collectors[self.sub_id] = self
        headers = {"activemq.prefetchSize": str(prefetch), "prefetch-count": str(prefetch), **(headers or {})}
        if browser:
            headers["browser"] = "true"
        link.conn.subscribe(dest, id=self.sub_id, ack=ack, headers=headers)

    @staticmethod
    def dispatch(link: _Link, frame: Any) -> None:
        col = link.collectors.get(frame.headers.get("subscription", ""))
        if col is None:
            return
        with col.cond:
            if frame.headers.get("browser") == "end":
                col.ended = True
            else:
                col.q.append(frame)
            col.cond.notify_all()

    def until_end(self, timeout: float, limit: int | None) -> list[Any]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not self.ended and (limit is None or len(self.q) < limit):
                left = deadline - time.monotonic()
                if left <= 0 or not self.link.connected:
                    raise BrokerUnavailable(f"STOMP queue browser on {mask_url(self.link.s.url)} did not end "
                                            f"within {timeout}s ({self.link.error or 'no end marker'})")
                self.cond.wait(min(left, 0.5))
            out = list(self.q)
        return out[:limit] if limit is not None else out

    def until(self, last: Callable[[Any], bool], timeout: float) -> list[Any]:
        """The frames received up to the first one for which ``last`` is true (included)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i, frame in enumerate(self.q):
                    if last(frame):
                        return list(self.q)[:i + 1]
                left = deadline - time.monotonic()
                if not self.link.connected:
                    raise BrokerUnavailable(f"connection closed by the server ({self.link.error or 'no error frame'})")
                if left <= 0:
                    raise BrokerUnavailable(f"no reply within {timeout}s")
                self.cond.wait(min(left, 0.5))

    def frames(self, idle: float) -> Iterable[Any]:
        while True:
            with self.cond:
                if not self.q:
                    self.cond.wait(idle)
                if not self.q:
                    return
                frame = self.q.popleft()
            yield frame
