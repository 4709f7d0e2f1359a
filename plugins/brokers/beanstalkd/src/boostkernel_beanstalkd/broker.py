"""The beanstalkd broker (greenstalk): reserve / delete / release / bury, on beanstalkd's own job states.

A queue is a tube. Each job's body is the kernel's envelope behind a small frame (``\\x01<message id>\\n``),
so the message id survives without parsing the JSON; a job without the frame (a foreign producer) gets
the id ``beanstalkd-<job id>``.

Connections and threads. beanstalkd ties a reserved job to the connection that reserved it (only that
connection may delete, release, bury or touch it) and releases every reserved job of a connection the
moment it closes, so a consumer killed with ``kill -9`` gives its jobs back at once. Each broker has:

* a **consumer connection** (watching the tube) under a lock. :meth:`BeanstalkdBroker.fetch` reserves up
  to N jobs in one pipelined round trip (``reserve-with-timeout 0`` x N) and reads their counters in a
  second (``stats-job``); when none is ready it waits in a blocking ``reserve-with-timeout`` (whole seconds,
  beanstalkd's granularity) or polls for sub-second timeouts. Acks (``delete``), releases and touches
  from worker threads are queued and sent pipelined by whichever thread holds the connection next.
* a **heartbeat thread** that touches every held job (prefetched or running) every ``heartbeat_interval``
  (``ttr / 4``), so a long task never outlives its TTR; beanstalkd itself interrupts a waiting reserve with
  ``DEADLINE_SOON`` one second before a held job's TTR ends, and the broker touches then too. The TTR is
  only the bound for a consumer that hangs or whose host vanishes without closing the socket.
* a **publisher connection** (``use`` the tube): ``publish_many`` pipelines every ``put`` in one write.
* an **admin connection** for count, purge and the dead-letter queue.

Delivery facts: ``delivery_count`` is the job's ``reserves`` counter; priority is beanstalkd's native
``pri`` (kernel priority ``p`` is ``pri = 2**31 - p``: higher first); a future ``eta`` is a native
``put`` delay and ``nack(delay=d)`` a ``release`` with delay, both rounded **up** to whole seconds.

Dead letters: ``bury`` keeps a job (body, priority) on the server but records no reason, so a
dead-lettered job is buried and a small reason record (JSON: job id, message id, reason, time) is put
into the tube ``<tube>.bk-dlq``, the record first and the bury second, in one pipelined write.
:meth:`BeanstalkdBroker.dead_letters` lists the records whose job is still buried (peeking its body),
:meth:`BeanstalkdBroker.replay_dead_letters` ``kick-job``\\ s them (priority kept), and records whose
job is gone are dropped. Standard beanstalkd tools see the buried jobs as usual.

Crash loops: the kernel calls :meth:`BeanstalkdBroker.started` before it runs a job, which appends the
message id to this consumer's running journal (:mod:`boostkernel.journal`). A job reserved again
(``reserves > 1``) that the journal of a dead consumer of this host (its lock released) lists as running
is charged one crash (:class:`boostkernel.journal.CrashCharges`: a small file per message id beside the
journals; each death counts once) and buried as a dead letter at ``max_deliveries`` crashes (reason
``crash-loop``). Prefetched bystanders are in no journal and are not charged, nor is a job whose TTR ran
out while its live consumer still runs it (its journal is locked). A consumer that died on another host
leaves no journal here: its jobs are redelivered without a crash count.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlparse

try:
    import greenstalk
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(f'the beanstalkd broker needs greenstalk ({exc}): pip install "boostkernel[beanstalkd]"') from exc

from boostkernel.broker import Broker, BrokerCapabilities, DeadLetterRecord, Delivery, Outgoing, consumer_window
from boostkernel.errors import BrokerUnavailable, ConfigError, MessageRejected
from boostkernel.journal import CrashCharges, RunningJournal, consumer_id, host_journal_dir
from boostkernel.logs import mask_url
from boostkernel.retrying import backoff_delay

DEFAULT_URL = "beanstalk://127.0.0.1:11300"
FRAME = b"\x01"
PRI_BASE = 2**31
PRI_MAX = 2**32 - 1
PIPELINE = 500
"""Commands written at once before the replies are read."""
SETTLE_DELAY = 0.05
"""Seconds after which the heartbeat thread sends settle commands that no fetch took along."""
MIN_WINDOW = 100
"""Smallest default window (see :func:`default_window`). The kernel fetches ``prefetch`` jobs at a time (4
for ``solo``); two round trips (reserve, stats-job) per 4 jobs cost more than a raw reserve/delete loop
saves, so the broker reserves a larger batch, hands it out from a local buffer and reserves ahead."""


def default_window(params: Any) -> int:
    """Jobs a consumer holds at most (reserved and not settled) when ``broker_options`` does not set
    ``window``: :func:`boostkernel.broker.consumer_window` with at least :data:`MIN_WINDOW`."""
    return consumer_window(params, MIN_WINDOW)
_JOB_STATS = re.compile(rb"\n(pri|ttr|reserves): (\d+)")
_TUBE_OK = re.compile(r"^[A-Za-z0-9+/;.$_()][A-Za-z0-9+/;.$_()-]*$")
_ERRORS = (OSError, ConnectionError, greenstalk.Error, ValueError, IndexError)

log = logging.getLogger("boostkernel.beanstalkd")


def tube_name(queue: str) -> str:
    """The beanstalkd tube of ``queue``: itself if it is a valid tube name, else a safe form plus a hash."""
    if _TUBE_OK.match(queue) and len(queue) <= 180:
        return queue
    safe = re.sub(r"[^A-Za-z0-9+/;.$_()-]", "_", queue).lstrip("-")[:160] or "q"
    return f"{safe}_{hashlib.sha1(queue.encode()).hexdigest()[:8]}"


def to_pri(priority: int) -> int:
    """Kernel priority (higher first) -> beanstalkd ``pri`` (lower first)."""
    return min(PRI_MAX, max(0, PRI_BASE - int(priority)))


def frame(message: Outgoing) -> bytes:
    return FRAME + message.id.encode() + b"\n" + message.body


def unframe(raw: bytes, job_id: int) -> tuple[str, bytes]:
    if raw[:1] == FRAME:
        nl = raw.find(b"\n")
        if nl > 0:
            return raw[1:nl].decode(errors="replace"), raw[nl + 1:]
    return f"beanstalkd-{job_id}", raw


def parse_stats(chunk: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in chunk.decode(errors="replace").splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            out[key.strip()] = value.strip().strip('"')
    return out


Reply = tuple[bytes, list[bytes], bytes | None]


class _Conn:
    """One beanstalkd connection: a greenstalk client on a socket with timeouts, plus pipelined commands."""

    def __init__(self, host: str, port: int, connect_timeout: float, io_timeout: float,
                 use: str | None = None, watch: Sequence[str] = ()) -> None:
        self.io_timeout = io_timeout
        sock = socket.create_connection((host, port), timeout=connect_timeout)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(io_timeout)
        self.client: greenstalk.Client[bytes] = greenstalk.Client(
            sock, encoding=None, use=use or greenstalk.DEFAULT_TUBE, watch=list(watch) or greenstalk.DEFAULT_TUBE)
        self.sock = sock
        self.reader = self.client._reader

    def pipeline(self, cmds: Sequence[bytes], wait: float = 0.0) -> list[Reply]:
        """Send every command in one write, then read one reply each: (status, values, body or None)."""
        if not cmds:
            return []
        if wait:
            self.sock.settimeout(wait + self.io_timeout)
        try:
            self.sock.sendall(b"\r\n".join(cmds) + b"\r\n")
            return [self._reply() for _ in cmds]
        finally:
            if wait:
                self.sock.settimeout(self.io_timeout)

    def _reply(self) -> Reply:
        line = self.reader.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("beanstalkd closed the connection")
        status, *values = line[:-2].split()
        size = -1
        if status in (b"RESERVED", b"FOUND"):
            size = int(values[1])
        elif status == b"OK":
            size = int(values[0])
        if size < 0:
            return status, values, None
        data = self.reader.read(size + 2)
        if len(data) != size + 2:
            raise ConnectionError("beanstalkd closed the connection mid-reply")
        return status, values, data[:-2]

    def close(self) -> None:
        try:
            self.client.close()
        except OSError:
            pass


class BeanstalkdBroker(Broker):
    """beanstalkd through greenstalk: reserve / delete / release, native priority and delay, touch
    heartbeats, buried jobs as the dead-letter queue (with reasons)."""

    name = "beanstalkd"
    capabilities = BrokerCapabilities(priority=True, delay=True, durable=True, batch_publish=True,
                                      recovery_seconds=5.0)
    default_url = DEFAULT_URL

    check_at_decoration = True  # __init__ checks the URL and options and does not connect

    def __init__(self, queue: str, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(queue, url, params, **options)
        o = self.options
        u = urlparse(self.checked_url(("beanstalk", "beanstalkd"), "a beanstalk://host:port URL"))
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 11300
        self.ttr = int(o.get("ttr", 60))
        if self.ttr < 2:
            raise ConfigError(f"broker_options ttr={self.ttr!r}: must be >= 2 seconds (beanstalkd keeps the last "
                              f"second of a TTR as its safety margin)")
        self.heartbeat_interval = float(o.get("heartbeat_interval", min(self.ttr / 4, 10.0)))
        if not 0 < self.heartbeat_interval < self.ttr - 1:
            raise ConfigError(f"broker_options heartbeat_interval={self.heartbeat_interval!r}: must be > 0 and "
                              f"shorter than ttr - 1 = {self.ttr - 1}")
        self.connect_timeout = float(o.get("connect_timeout", 5.0))
        self.io_timeout = float(o.get("io_timeout", 30.0))
        self.publish_timeout = float(o.get("publish_timeout", 30.0))
        self.window = int(o.get("window", default_window(params)))
        if self.window < 1:
            raise ConfigError(f"broker_options window={self.window!r}: must be >= 1")
        self.tube = tube_name(queue)
        self.dlq_tube = f"{self.tube}.bk-dlq"
        self.owner = consumer_id()
        self.journal_dir = host_journal_dir("beanstalkd-" + self.tube)
        self.journal = RunningJournal(self.journal_dir, self.owner)
        self.crash_charges = CrashCharges(self.journal_dir, self.owner)
        # consumer
        self._clock = threading.Lock()
        self._con: _Conn | None = None
        self._gen = 0
        self._held: dict[int, tuple[int, int]] = {}
        """Jobs reserved on the live consumer connection and not settled: id -> (pri, ttr)."""
        self._pending: deque[tuple[int, int, bytes]] = deque()
        """(generation, job id, command) handed over by settling threads, sent by the next lock holder."""
        self._buffer: deque[Delivery] = deque()
        """Reserved (so held and touched) and not yet handed to the kernel."""
        self._con_failures = 0
        self._closed = threading.Event()
        self._wake = threading.Event()
        """Set by a fetch that left the buffer low: the heartbeat thread reserves ahead at once."""
        self._hb: threading.Thread | None = None
        # publisher and admin
        self._plock = threading.Lock()
        self._pub: _Conn | None = None
        self._alock = threading.Lock()
        self._admin_conn: _Conn | None = None

    def _connect(self, use: str | None, watch: Sequence[str]) -> _Conn:
        try:
            return _Conn(self.host, self.port, self.connect_timeout, self.io_timeout, use, watch)
        except _ERRORS as exc:
            raise BrokerUnavailable(f"cannot connect to beanstalkd at {mask_url(self.url)}: "
                                    f"{type(exc).__name__}: {exc}") from None

    # --- publishing ---------------------------------------------------------------------------------
    def _put_cmd(self, m: Outgoing, now: float) -> bytes:
        body = frame(m)
        delay = max(0, math.ceil(m.eta - now)) if m.eta is not None and m.eta > now else 0
        return b"put %d %d %d %d\r\n%b" % (to_pri(m.priority), delay, self.ttr, len(body), body)

    def publish(self, message: Outgoing) -> None:
        """One ``put`` and its answer on the open publisher connection; reconnecting and the error paths
        are :meth:`publish_many`'s."""
        if self._closed.is_set():
            raise BrokerUnavailable(f"beanstalkd broker for queue {self.queue!r} is closed")
        cmd = self._put_cmd(message, time.time()) + b"\r\n"
        with self._plock:
            pub = self._pub
            if pub is not None:
                try:
                    pub.sock.sendall(cmd)
                    line = pub.reader.readline()
                except _ERRORS:
                    pub.close()
                    self._pub = None
                else:
                    if line.startswith(b"INSERTED"):
                        return
                    if line.endswith(b"\r\n"):  # answered, but not stored: never sent again
                        hint = (" (beanstalkd's max job size: start it with -z BYTES)"
                                if line.startswith(b"JOB_TOO_BIG") else "")
                        raise MessageRejected(f"beanstalkd refused message {message.id} for queue "
                                              f"{self.queue!r}: {line.strip().decode(errors='replace')}{hint}")
                    pub.close()
                    self._pub = None
        self.publish_many((message,))

    def publish_many(self, messages: Sequence[Outgoing]) -> None:
        """Pipeline every ``put`` (500 per write) and check each ``INSERTED``. Reconnects and resends the
        puts not yet confirmed when the connection fails (at-least-once: a resent put may be a duplicate)."""
        if self._closed.is_set():
            raise BrokerUnavailable(f"beanstalkd broker for queue {self.queue!r} is closed")
        todo = list(messages)
        deadline = time.monotonic() + self.publish_timeout
        attempt = 0
        with self._plock:
            while todo:
                try:
                    if self._pub is None:
                        self._pub = self._connect(self.tube, ())
                    now = time.time()
                    chunk = todo[:PIPELINE]
                    replies = self._pub.pipeline([self._put_cmd(m, now) for m in chunk])
                except (BrokerUnavailable, *_ERRORS) as exc:
                    if self._pub is not None:
                        self._pub.close()
                        self._pub = None
                    attempt += 1
                    wait = backoff_delay(attempt, base=0.1, cap=2.0)
                    if time.monotonic() + wait > deadline:
                        raise BrokerUnavailable(f"cannot publish to beanstalkd at {mask_url(self.url)}: "
                                                f"{exc}") from None
                    time.sleep(wait)
                    continue
                attempt = 0
                for m, (status, values, _) in zip(chunk, replies, strict=True):
                    if status != b"INSERTED":
                        hint = (" (beanstalkd's max job size: start it with -z BYTES)"
                                if status == b"JOB_TOO_BIG" else "")
                        raise MessageRejected(f"beanstalkd refused message {m.id} for queue {self.queue!r}: "
                                              f"{b' '.join([status, *values]).decode()}{hint}")
                todo = todo[PIPELINE:]

    # --- consuming ----------------------------------------------------------------------------------
    def _consumer(self) -> _Conn:
        """The live consumer connection (lock held); connects, and starts the heartbeat thread, if needed."""
        if self._con is None:
            if self._hb is None:
                self.crash_charges.sweep()
                self.journal.open()
                self._hb = threading.Thread(target=self._heartbeat, name=f"boostkernel-beanstalkd-{self.queue}",
                                            daemon=True)
                self._hb.start()
            self._con = self._connect(self.dlq_tube, (self.tube,))
            self._con_failures = 0
        return self._con

    def _lost(self, exc: BaseException) -> None:
        """The consumer connection failed (lock held): beanstalkd released every job it held."""
        if self._con is not None:
            self._con.close()
            self._con = None
        self._gen += 1
        self._held.clear()
        self._buffer.clear()
        self._pending.clear()
        self._con_failures += 1
        if not self._closed.is_set():
            self.log.warning("beanstalkd consumer connection to %s lost (%s: %s); reconnecting",
                             mask_url(self.url), type(exc).__name__, exc)

    def _take(self) -> list[bytes]:
        """Up to ``PIPELINE`` queued settle commands of the live connection (lock held)."""
        pending, gen = self._pending, self._gen
        cmds: list[bytes] = []
        while pending and len(cmds) < PIPELINE:
            g, jid, cmd = pending.popleft()
            if g != gen:
                continue  # from a connection that is gone: the server released the job
            if cmd[:1] == b"t" or self._held.pop(jid, None) is not None:  # touch, or settle a held job once
                cmds.append(cmd)
        return cmds

    def _flush(self, con: _Conn) -> None:
        """Send the queued deletes / releases / touches of this connection (lock held)."""
        while self._pending:
            con.pipeline(self._take())  # NOT_FOUND (the job's TTR ran out meanwhile) needs nothing more

    def _kick(self) -> None:
        """Flush queued settle commands if the connection is free (else its holder flushes them)."""
        while self._pending and self._con is not None:
            if not self._clock.acquire(blocking=False):
                return
            try:
                if self._con is not None:
                    try:
                        self._flush(self._con)
                    except _ERRORS as exc:
                        self._lost(exc)
            finally:
                self._clock.release()

    def _touch_held(self) -> None:
        gen = self._gen
        self._pending.extend((gen, jid, b"touch %d" % jid) for jid in list(self._held))

    def _heartbeat(self) -> None:
        """Touch held jobs every ``heartbeat_interval``. Settle commands normally ride along with the next
        fetch's write; those that no fetch took along (the consume loop is waiting for a free worker, or
        stopped) are sent from here within ``SETTLE_DELAY``."""
        next_beat = time.monotonic() + self.heartbeat_interval
        wake, stop = self._wake, self._closed
        while not stop.is_set():
            wake.wait(SETTLE_DELAY)
            wake.clear()
            if stop.is_set():
                return
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + self.heartbeat_interval
                self.journal.touch()
                if self._held:
                    self._touch_held()
            if self._pending:  # settled jobs first: they free room in the window
                self._kick()
            if self._wants_more():
                self._reserve_ahead()

    def _wants_more(self) -> bool:
        return (len(self._buffer) < self.window // 2 and self.window - len(self._held) >= max(1, self.window // 4)
                and self._con is not None)

    def _reserve_ahead(self) -> None:
        """Reserve what the window has room for into the buffer, without waiting (heartbeat thread)."""
        if not self._clock.acquire(blocking=False):
            return  # a fetch holds the connection: it reserves itself
        try:
            con = self._con
            if con is None or self._closed.is_set() or not self._wants_more():
                return
            try:
                self._buffer.extend(self._reserve(con, self.window - len(self._held), 0))
            except _ERRORS as exc:
                self._lost(exc)
        finally:
            self._clock.release()

    def _from_buffer(self, n: int) -> list[Delivery]:
        out: list[Delivery] = []
        buf = self._buffer
        try:
            while len(out) < n:
                out.append(buf.popleft())
        except IndexError:
            pass
        return out

    def buffered(self) -> int:
        """Jobs reserved ahead (the consumer window) that :meth:`fetch` has not returned yet: reserved on the
        server, so not ``current-jobs-ready``; ``close()`` or a lost connection releases them."""
        return len(self._buffer)

    def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        """From the buffer when it holds jobs (no round trip; the heartbeat thread reserves ahead when it
        runs low), else reserved on the consumer connection: up to the room left in the window."""
        if self._closed.is_set():
            return []
        n = max(1, max_messages)
        if self._buffer:
            gen = self._gen
            ready = [d for d in self._from_buffer(n) if d.tag[0] == gen]  # a lost connection released the others
            if ready:
                if len(self._buffer) < self.window // 2 or self._pending:
                    self._wake.set()  # the heartbeat thread sends the settles and reserves ahead
                return ready
        deadline = time.monotonic() + timeout
        pause = 0.005
        retried = False
        while True:
            out: list[Delivery] | None = None
            with self._clock:
                if self._closed.is_set():
                    return []
                try:
                    con = self._consumer()
                    if self._buffer:  # the heartbeat thread reserved ahead meanwhile
                        return self._from_buffer(n)
                    left = deadline - time.monotonic()
                    want = max(n, self.window - len(self._held))
                    got = self._reserve(con, want, 0)
                    if not got and left >= 1.0:
                        got = self._reserve(con, want, int(left))
                    out = got[:n]
                    self._buffer.extend(got[n:])
                except BrokerUnavailable:
                    raise
                except _ERRORS as exc:
                    self._lost(exc)
                    if retried:
                        raise BrokerUnavailable(f"beanstalkd at {mask_url(self.url)}: {exc}") from None
                    retried = True
                    continue
            self._kick()
            if out:
                return out
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.05)

    def _reserve(self, con: _Conn, n: int, wait: int) -> list[Delivery]:
        """Reserve up to ``n`` jobs (lock held): all at once without waiting, or one waiting ``wait``
        seconds and then the rest without waiting; then read their counters in one more round trip."""
        settle = self._take()  # queued deletes/releases/touches go out in the same write, first
        k = len(settle)
        if wait:
            replies = con.pipeline([*settle, b"reserve-with-timeout %d" % wait], wait=wait)[k:]
            if replies[0][0] == b"RESERVED" and n > 1:
                replies += con.pipeline([b"reserve-with-timeout 0"] * (n - 1))
        else:
            replies = con.pipeline([*settle, *[b"reserve-with-timeout 0"] * n])[k:]
        jobs = [(int(v[0]), body) for status, v, body in replies if status == b"RESERVED" and body is not None]
        if any(status == b"DEADLINE_SOON" for status, _, _ in replies):
            self._touch_held()  # a held job is within a second of its TTR: touch now, sent right below
        if not jobs:
            self._flush(con)
            return []
        stats = con.pipeline([b"stats-job %d" % jid for jid, _ in jobs])
        out: list[Delivery] = []
        dead: list[bytes] = []
        gen = self._gen
        for (jid, raw), (status, _, chunk) in zip(jobs, stats, strict=True):
            st = dict(_JOB_STATS.findall(chunk)) if status == b"OK" and chunk is not None else {}
            pri, ttr = int(st.get(b"pri", PRI_BASE)), int(st.get(b"ttr", self.ttr))
            reserves = int(st.get(b"reserves", 1))
            mid, body = unframe(raw, jid)
            crashes = 0
            if reserves > 1:
                crashes, reason = self.crash_charges.redelivered(mid, self.max_crashes)
                if reason is not None:
                    self.log.error("message %s dead-lettered: %s", mid, reason)
                    dead += self._bury_cmds(jid, mid, pri, reason)
                    continue
            self._held[jid] = (pri, ttr)
            out.append(Delivery(mid, body, (gen, jid), reserves, {"job": jid, "pri": pri}, crashes))
        if dead:
            con.pipeline(dead)
        return out

    def _bury_cmds(self, jid: int, mid: str, pri: int, reason: str) -> list[bytes]:
        """The reason record into the DLQ tube (the consumer connection ``use``\\ s it), then the bury."""
        record = json.dumps({"job": jid, "id": mid, "reason": reason, "at": round(time.time(), 3)}).encode()
        return [b"put %d 0 60 %d\r\n%b" % (PRI_BASE, len(record), record), b"bury %d %d" % (jid, pri)]

    # --- settling -------------------------------------------------------------------------------------
    def started(self, delivery: Delivery) -> None:
        """Record that this delivery runs now: one write(2) to this consumer's journal (see the module doc)."""
        self.journal.started(delivery.id)

    def _settle(self, items: Iterable[tuple[Delivery, bytes]]) -> None:
        for d, cmd in items:
            self.journal.finished(d.id)
            if d.crashes or d.delivery_count > 1:
                self.crash_charges.forget(d.id)
            gen, jid = d.tag
            self._pending.append((gen, jid, cmd))

    def ack(self, delivery: Delivery) -> None:
        self._settle(((delivery, b"delete %d" % delivery.tag[1]),))

    def ack_many(self, deliveries: Iterable[Delivery]) -> None:
        self._settle((d, b"delete %d" % d.tag[1]) for d in deliveries)

    def nack(self, delivery: Delivery, requeue: bool = True, delay: float = 0.0) -> None:
        """``release`` with the job's priority and the delay rounded up to whole seconds, or ``delete``."""
        jid = delivery.tag[1]
        if requeue:
            pri = int(delivery.extra.get("pri", PRI_BASE))
            self.journal.finished(delivery.id)
            self._pending.append((delivery.tag[0], jid, b"release %d %d %d" % (jid, pri, max(0, math.ceil(delay)))))
        else:
            self._settle(((delivery, b"delete %d" % jid),))

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Bury the job and record the reason in ``<tube>.bk-dlq`` (one pipelined write; waits for it)."""
        self.journal.finished(delivery.id)
        gen, jid = delivery.tag
        with self._clock:
            if self._closed.is_set() or gen != self._gen or self._con is None or jid not in self._held:
                self.log.warning("message %s not dead-lettered: its connection is gone (it is redelivered)",
                                 delivery.id)
                return
            pri = self._held.pop(jid)[0]
            try:
                replies = self._con.pipeline(self._bury_cmds(jid, delivery.id, pri, reason))
            except _ERRORS as exc:
                self._lost(exc)
                self.log.warning("message %s not dead-lettered (%s); it is redelivered", delivery.id, exc)
                return
        self._kick()
        self.crash_charges.forget(delivery.id)
        if replies[1][0] != b"BURIED":
            self.log.warning("bury of message %s answered %s", delivery.id, replies[1][0].decode())

    # --- admin: count, purge, dead letters ------------------------------------------------------------
    def _admin(self, fn: Any) -> Any:
        with self._alock:
            for attempt in (0, 1):
                try:
                    if self._admin_conn is None:
                        self._admin_conn = self._connect(self.tube, (self.dlq_tube,))
                    return fn(self._admin_conn)
                except _ERRORS as exc:
                    if self._admin_conn is not None:
                        self._admin_conn.close()
                        self._admin_conn = None
                    if attempt:
                        raise BrokerUnavailable(f"beanstalkd at {mask_url(self.url)}: {exc}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _tube_stats(self, con: _Conn, tube: str) -> dict[str, str]:
        status, _, chunk = con.pipeline([b"stats-tube %b" % tube.encode()])[0]
        return parse_stats(chunk) if status == b"OK" and chunk is not None else {}

    def count(self) -> int:
        """Ready plus delayed jobs of the tube (reserved and buried ones are not counted)."""
        def run(con: _Conn) -> int:
            st = self._tube_stats(con, self.tube)
            return int(st.get("current-jobs-ready", 0)) + int(st.get("current-jobs-delayed", 0))

        return int(self._admin(run))

    def purge(self) -> int:
        """Delete every ready and delayed job (reserved jobs are in flight and stay)."""
        def run(con: _Conn) -> int:
            n = 0
            for peek in (b"peek-ready", b"peek-delayed"):
                while True:
                    status, values, _ = con.pipeline([peek])[0]
                    if status != b"FOUND":
                        break
                    if con.pipeline([b"delete %b" % values[0]])[0][0] == b"DELETED":
                        n += 1
            return n

        return int(self._admin(run))

    def _records(self, con: _Conn, limit: int | None) -> list[tuple[int, dict[str, Any]]]:
        """Reserve the reason records of the DLQ tube (admin connection): [(record job id, record)]."""
        out: list[tuple[int, dict[str, Any]]] = []
        while limit is None or len(out) < limit:
            status, values, body = con.pipeline([b"reserve-with-timeout 0"])[0]
            if status == b"DEADLINE_SOON":
                continue
            if status != b"RESERVED" or body is None:
                break
            try:
                rec = json.loads(body)
                if not isinstance(rec, dict):
                    raise ValueError("not an object")
            except ValueError:
                rec = {}
            out.append((int(values[0]), rec))
        return out

    def _buried(self, con: _Conn, jid: int) -> tuple[str, bytes | None]:
        """(state, body) of job ``jid``: state '' when it is gone."""
        (s1, _, stats), (s2, _, body) = con.pipeline([b"stats-job %d" % jid, b"peek %d" % jid])
        if s1 != b"OK" or stats is None:
            return "", None
        return parse_stats(stats).get("state", ""), body if s2 == b"FOUND" else None

    def dead_letters(self, limit: int = 100) -> list[DeadLetterRecord]:
        """The oldest ``limit`` dead letters: reason records whose job is still buried (read, then released)."""
        def run(con: _Conn) -> list[DeadLetterRecord]:
            records = self._records(con, None)
            out: list[DeadLetterRecord] = []
            cmds: list[bytes] = []
            for rid, rec in records:
                jid = int(rec.get("job", 0) or 0)
                state, raw = self._buried(con, jid) if jid else ("", None)
                if state in ("", "ready", "delayed"):  # the job came back or is gone: a stale record
                    cmds.append(b"delete %d" % rid)
                    continue
                cmds.append(b"release %d %d 0" % (rid, PRI_BASE))
                if state == "buried" and raw is not None and len(out) < limit:
                    mid, body = unframe(raw, jid)
                    out.append(DeadLetterRecord(str(rec.get("id") or mid), body, str(rec.get("reason", "")),
                                                float(rec.get("at", 0.0)), jid))
            con.pipeline(cmds)
            return out

        return list(self._admin(run))

    def replay_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        """``kick-job`` the buried jobs (all, or those with ``ids``) back to ready; their records are deleted."""
        wanted = set(ids) if ids is not None else None

        def run(con: _Conn) -> int:
            n = 0
            cmds: list[bytes] = []
            for rid, rec in self._records(con, None):
                jid, mid = int(rec.get("job", 0) or 0), str(rec.get("id", ""))
                if wanted is not None and mid not in wanted:
                    cmds.append(b"release %d %d 0" % (rid, PRI_BASE))
                    continue
                if jid and con.pipeline([b"kick-job %d" % jid])[0][0] == b"KICKED":
                    n += 1
                    self.crash_charges.forget(mid)
                cmds.append(b"delete %d" % rid)
            con.pipeline(cmds)
            return n

        return int(self._admin(run))

    def purge_dead_letters(self) -> int:
        def run(con: _Conn) -> int:
            n = 0
            cmds: list[bytes] = []
            for rid, rec in self._records(con, None):
                jid = int(rec.get("job", 0) or 0)
                if jid and self._buried(con, jid)[0] == "buried":
                    cmds.append(b"delete %d" % jid)
                    n += 1
                cmds.append(b"delete %d" % rid)
            con.pipeline(cmds)
            return n

        return int(self._admin(run))

    # --- lifecycle ------------------------------------------------------------------------------------
    def close(self) -> None:
        """Send pending acks, release every held job (at once, uncharged), close the connections."""
        if not self.stop_background(self._closed):
            return
        with self._clock:
            con = self._con
            if con is not None:
                try:
                    self._flush(con)
                    con.pipeline([b"release %d %d 0" % (jid, pri) for jid, (pri, _) in self._held.items()])
                except _ERRORS:
                    pass  # the server releases a closed connection's jobs anyway
                con.close()
                self._con = None
            self._held.clear()
            self._pending.clear()
        with self._plock:
            if self._pub is not None:
                self._pub.close()
                self._pub = None
        with self._alock:
            if self._admin_conn is not None:
                self._admin_conn.close()
                self._admin_conn = None
        self.journal.close()

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(tube=self.tube, dlq=self.dlq_tube, ttr=self.ttr)
        return d

