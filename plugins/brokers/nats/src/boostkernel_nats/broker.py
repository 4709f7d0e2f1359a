"""The NATS JetStream broker (nats-py) behind the kernel's synchronous Broker interface.

nats-py is asyncio-only. Each broker runs its own event loop in a dedicated daemon thread (``boostkernel-nats``)
that owns the connection; publishing and the admin calls hand coroutines to it (``run_coroutine_threadsafe``)
and wait with a timeout. Acks, naks and in-progress signals are fire-and-forget publishes to the message's
reply subject, queued from any thread and sent by the loop in one batch (one wake-up of the loop per batch,
no round trip per ack).

Consuming does not use nats-py's ``PullSubscription`` (its ``fetch(n)`` hands a batch over only once the whole
pull is complete, at a task and a ``wait_for`` per message): the broker speaks the pull protocol itself. A
core subscription on its own inbox ``<inbox>.*`` receives the messages of pull requests it publishes to
``$JS.API.CONSUMER.MSG.NEXT.<stream>.bk`` (JSON ``{"batch": n, "expires": ns}``, reply ``<inbox>.<n>``); the
server sends each message as soon as it is there. The subscription's callback appends each one to a buffer
(a deque under a ``threading.Condition``) and the kernel's ``fetch`` takes from it in its own thread, waiting
on the condition when it is empty. Status replies (``408`` request expired, ``409`` request ended, with
``Nats-Pending-Messages``) only settle the accounting of the requests in flight. The window
(``broker_options`` ``window``, see :func:`default_window`) bounds the messages held plus the batch credit
still asked for; a new request goes out once a quarter of it is free.

Topology (created on first use, file storage, so durable across a server restart):

* stream ``BK_<queue>`` on subject ``bk.<queue>``, **work-queue retention** (an acked message is deleted);
* one durable pull consumer ``bk`` on it, explicit ack, ``ack_wait`` = ``lease`` (default 10 s), no
  server-side ``max_deliver`` (unlimited: the crash-loop limit below counts only deaths while running);
  every broker of the queue binds to it, so consumers compete;
* stream ``BK_<queue>_DLQ`` on subject ``bkdlq.<queue>`` (limits retention): dead letters, the original
  body with headers ``Bk-Id``, ``Bk-Reason``, ``Bk-Failed-At``. A dead letter is published (PubAck awaited)
  before the original is acked, so a crash in between leaves a duplicate, never a loss.

Delivery (at-least-once):

* JetStream does not watch a pull consumer's connection: an unacked message comes back when its
  ``ack_wait`` expires. A live consumer keeps every message it holds (prefetched or running) with an
  in-progress signal (``+WPI``, which restarts ``ack_wait``) every ``heartbeat_interval`` (``lease / 4``)
  from the loop thread, so long tasks are never redelivered; a dead one stops signalling and its
  messages are redelivered ``lease`` seconds later (``recovery_seconds``).
* ``delivery_count`` is the server's ``num_delivered`` (message metadata).
* ``nack(delay=d)`` is a NAK with delay: the server holds the message for ``d`` seconds.
* A message published with a future ``eta`` carries header ``Bk-Eta``; a consumer that receives it early
  NAKs it with the remaining delay (the server holds it, the worker never does). Its ``delivery_count``
  therefore includes that early look.
* Crash loops: the kernel calls :meth:`NatsBroker.started` before running a message, which appends its
  id to this consumer's running journal (:mod:`boostkernel.journal`). A redelivered message
  (``num_delivered > 1``) that the journal of a dead consumer of this host (its lock released) lists as
  running is charged one crash (:class:`boostkernel.journal.CrashCharges`: a small file per message id
  beside the journals; each death counts once), and dead-lettered at ``max_deliveries`` crashes with
  reason ``crash-loop``. Prefetched bystanders are in no journal and are not charged, nor is a message redelivered while its live consumer still runs it (its
  journal is locked). A consumer killed on another host leaves no journal here: its messages
  are redelivered without a crash count (``max_deliver``, off by default, caps deliveries of any kind).
* No priority: JetStream delivers in stream order (``capabilities.priority`` is False, so the kernel refuses
  ``TaskOptions(priority=...)`` at publish time).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import hashlib
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, TypeVar

try:
    import nats
    import nats.errors
    import nats.js.errors
    from nats.js import api
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(f'the nats broker needs nats-py ({exc}): pip install "boostkernel[nats]"') from exc

from boostkernel.broker import Broker, BrokerCapabilities, DeadLetterRecord, Delivery, Outgoing, consumer_window
from boostkernel.errors import BrokerUnavailable, ConfigError, MessageRejected
from boostkernel.journal import CrashCharges, RunningJournal, consumer_id, host_journal_dir
from boostkernel.logs import mask, mask_url

DEFAULT_URL = "nats://127.0.0.1:4222"
H_ID, H_REASON, H_FAILED_AT, H_ETA = "Bk-Id", "Bk-Reason", "Bk-Failed-At", "Bk-Eta"
CONSUMER = "bk"
SETTLE_DELAY = 0.05
"""Seconds within which the loop's settle task sends acks that no fetch took along."""
PULL_EXPIRES = 5.0
"""Seconds a pull request waits at the server for messages (it returns each one as it comes)."""
PULL_GRACE = 1.0
"""Seconds past its expiry after which a pull request whose status never came (a lost reply) is forgotten."""
MAX_REQUESTS = 16
"""Pull requests in flight at once, at most."""
PUBLISH_WINDOW = 500
"""Publishes in flight at once (their PubAcks awaited together) in ``publish_many``."""
MIN_WINDOW = 100
"""Smallest default window (see :func:`default_window`). The kernel asks for ``prefetch`` (4 for ``solo``) at a time; a pull request
per 4 messages costs a round trip each (about a quarter of a raw ``fetch(100)`` loop's speed), so the
broker pulls a larger batch, hands it out from a local buffer and pulls the next one ahead."""
_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")
T = TypeVar("T")

log = logging.getLogger("boostkernel.nats")


def default_window(params: Any) -> int:
    """Messages a consumer holds at most (pulled and not settled) when ``broker_options`` does not set
    ``window``: :func:`boostkernel.broker.consumer_window` with at least :data:`MIN_WINDOW`."""
    return consumer_window(params, MIN_WINDOW)


def queue_token(queue: str) -> str:
    """A stream-name and subject-token safe form of ``queue`` (unsafe characters replaced, plus a hash)."""
    if _SAFE.match(queue):
        return queue
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", queue)[:60]
    return f"{safe}_{hashlib.sha1(queue.encode()).hexdigest()[:8]}"


def ack_info(reply: str) -> tuple[int, int] | None:
    """(num_delivered, stream sequence) from a JetStream ack subject, without building nats-py's metadata
    (which also converts the timestamp): ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>``
    or the form with domain and account hash (12 tokens). ``None`` for anything else."""
    t = reply.split(".")
    try:
        if len(t) == 9:
            return int(t[4]), int(t[5])
        if len(t) >= 11:
            return int(t[6]), int(t[7])
    except ValueError:
        pass
    return None


class _Loop:
    """An asyncio event loop in a daemon thread; :meth:`run` executes a coroutine there and waits."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)
        self.thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            try:
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            except Exception:  # noqa: BLE001
                pass
            self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise BrokerUnavailable(f"no answer from the NATS connection within {timeout:.0f}s") from None

    def call_soon(self, fn: Callable[[], Any]) -> None:
        self.loop.call_soon_threadsafe(fn)

    def stop(self, timeout: float) -> None:
        if self.loop.is_closed():
            return
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:  # already closed
            return
        self.thread.join(timeout)


class NatsBroker(Broker):
    """NATS JetStream through nats-py: durable pull consumer, explicit acks, in-progress heartbeats, DLQ stream."""

    name = "nats"
    capabilities = BrokerCapabilities(priority=False, delay=True, durable=True, batch_publish=True,
                                      recovery_seconds=15.0)
    default_url = DEFAULT_URL
    url: str

    check_at_decoration = True  # __init__ checks the URL and options and does not connect

    def __init__(self, queue: str, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(queue, url, params, **options)
        o = self.options
        self.checked_url(("nats", "tls", "ws", "wss"), "a nats:// (or tls://) URL")
        self.lease = float(o.get("lease", 10.0))
        if self.lease < 1.0:
            raise ConfigError(f"broker_options lease={self.lease!r}: the JetStream ack_wait must be >= 1 second")
        self.heartbeat_interval = float(o.get("heartbeat_interval", self.lease / 4))
        if not 0 < self.heartbeat_interval < self.lease:
            raise ConfigError(f"broker_options heartbeat_interval={self.heartbeat_interval!r}: must be > 0 and "
                              f"shorter than lease={self.lease}")
        self.max_deliver = int(o.get("max_deliver", 0))
        self.max_ack_pending = int(o.get("max_ack_pending", 20_000))
        self.window = int(o.get("window", default_window(params)))
        if self.window < 1:
            raise ConfigError(f"broker_options window={self.window!r}: must be >= 1")
        self.publish_timeout = float(o.get("publish_timeout", 30.0))
        self.connect_timeout = float(o.get("connect_timeout", 5.0))
        token = queue_token(queue)
        self.stream, self.subject = f"BK_{token}", f"bk.{token}"
        self.dlq_stream, self.dlq_subject = f"BK_{token}_DLQ", f"bkdlq.{token}"
        self.owner = consumer_id()
        self.journal_dir = host_journal_dir("nats-" + token)
        self.journal = RunningJournal(self.journal_dir, self.owner)
        self.crash_charges = CrashCharges(self.journal_dir, self.owner)
        self._lock = threading.Lock()
        self._io: _Loop | None = None
        self._nc: Any = None
        self._js: Any = None
        self._sub: Any = None
        """The core subscription on ``<inbox>.*`` that receives our pull requests' messages."""
        self._inbox = ""
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{CONSUMER}"
        self._topology = False
        self._closed = False
        self._closing = False
        self._held: dict[str, Any] = {}
        """Messages pulled and not settled, by reply subject (loop thread only)."""
        self._settle: collections.deque[tuple[Any, bytes]] = collections.deque()
        self._flush_scheduled = False
        self._wake_at = max(1, self.window // 4)
        """Queued acks that wake the loop thread (see :meth:`_queue_settle`)."""
        self._cond = threading.Condition(threading.Lock())
        self._buffer: collections.deque[Delivery] = collections.deque()
        """Pulled and not yet handed to the kernel (under ``_cond``); held, so heartbeated."""
        self._waiting = 0
        """Threads waiting in :meth:`fetch` for the buffer (under ``_cond``): the callback signals only then."""
        self._demand = 0
        """What the waiting :meth:`fetch` asked for: pulled even past the window (as the kernel asks for it)."""
        self._reqs: dict[str, list[Any]] = {}
        """Pull requests in flight (loop thread): token -> [batch left (estimated), local expiry]."""
        self._credit = 0
        """Messages asked for and not yet received (loop thread)."""
        self._req_seq = 0
        self._backoff_until = 0.0
        self._hb_task: Any = None
        self._alock: asyncio.Lock | None = None

    # --- connection ---------------------------------------------------------------------------------
    def _loop(self) -> _Loop:
        io = self._io
        if io is None:
            with self._lock:
                if self._closed:
                    raise BrokerUnavailable(f"nats broker for queue {self.queue!r} is closed")
                if self._io is None:
                    self._io = _Loop(f"boostkernel-nats-{self.queue}")
                io = self._io
        return io

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return self._loop().run(coro, self.publish_timeout if timeout is None else timeout)

    async def _connect(self) -> Any:
        if self._nc is not None:
            return self._nc
        if self._alock is None:
            self._alock = asyncio.Lock()
        async with self._alock:  # concurrent first calls (several publishing threads) share one connection
            if self._nc is None:
                await self._open()
        return self._nc

    async def _open(self) -> None:

        async def disconnected() -> None:
            if not self._closed:
                self.log.warning("nats connection to %s lost; reconnecting", mask_url(self.url))

        async def error(exc: Exception) -> None:
            self.log.debug("nats: %s", mask(str(exc)))

        try:
            # one retry for the first connection (an unreachable server is an error now); after it,
            # reconnect forever: nats-py reads max_reconnect_attempts from its options at each reconnect
            nc = await nats.connect(self.url, connect_timeout=self.connect_timeout, max_reconnect_attempts=1,
                                    reconnect_time_wait=0.5, allow_reconnect=True, ping_interval=5,
                                    max_outstanding_pings=3, name=f"boostkernel {self.queue}",
                                    disconnected_cb=disconnected, error_cb=error,
                                    reconnected_cb=self._reconnected)
            nc.options["max_reconnect_attempts"] = -1
        except Exception as exc:  # noqa: BLE001
            raise BrokerUnavailable(f"cannot connect to NATS at {mask_url(self.url)}: "
                                    f"{mask(f'{type(exc).__name__}: {exc}')}") from None
        self._nc, self._js = nc, nc.jetstream(timeout=self.publish_timeout)

    async def _ensure_topology(self) -> None:
        await self._connect()
        if self._topology:
            return
        assert self._alock is not None
        async with self._alock:
            if not self._topology:
                await self._declare()

    async def _declare(self) -> None:
        jsm = self._js
        for name, subject, retention in ((self.stream, self.subject, api.RetentionPolicy.WORK_QUEUE),
                                         (self.dlq_stream, self.dlq_subject, api.RetentionPolicy.LIMITS)):
            cfg = api.StreamConfig(name=name, subjects=[subject], retention=retention,
                                   storage=api.StorageType.FILE, duplicate_window=120.0)
            try:
                await jsm.add_stream(cfg)
            except nats.js.errors.BadRequestError as exc:
                if "already in use" not in str(exc.description or exc):
                    raise ConfigError(f"cannot create JetStream stream {name!r}: {exc}") from None
        ccfg = api.ConsumerConfig(durable_name=CONSUMER, ack_policy=api.AckPolicy.EXPLICIT, ack_wait=self.lease,
                                  max_deliver=-1, max_ack_pending=self.max_ack_pending,
                                  filter_subject=self.subject, max_waiting=4096)
        try:
            await jsm.add_consumer(self.stream, ccfg)
        except nats.js.errors.BadRequestError as exc:  # exists with another configuration: use it as it is
            self.log.warning("JetStream consumer %s/%s exists with another configuration (%s); using it",
                             self.stream, CONSUMER, exc.description or exc)
        self._topology = True

    # --- publishing ---------------------------------------------------------------------------------
    def _headers(self, m: Outgoing, nonce: str) -> dict[str, str]:
        h = {H_ID: m.id, "Nats-Msg-Id": f"{m.id}:{nonce}"}
        if m.eta is not None and m.eta > time.time() + 0.001:
            h[H_ETA] = f"{m.eta:.3f}"
        return h

    async def _publish(self, messages: Sequence[Outgoing]) -> None:
        await self._ensure_topology()
        js = self._js
        nonce = uuid.uuid4().hex[:12]  # the same per retry (deduplicated by the server), new per call
        todo = list(messages)
        deadline = time.monotonic() + self.publish_timeout
        delay = 0.1
        while todo:
            results: list[Any]
            if len(todo) == 1:  # one message: no task per publish
                m = todo[0]
                try:
                    results = [await js.publish(self.subject, m.body, headers=self._headers(m, nonce), timeout=5.0)]
                except Exception as exc:  # noqa: BLE001 - sorted out below
                    results = [exc]
            else:  # pipelined, PUBLISH_WINDOW at a time (all at once would time out on a slow server)
                results = []
                for i in range(0, len(todo), PUBLISH_WINDOW):
                    results += await asyncio.gather(
                        *(js.publish(self.subject, m.body, headers=self._headers(m, nonce), timeout=5.0)
                          for m in todo[i:i + PUBLISH_WINDOW]), return_exceptions=True)
            failed = [(m, r) for m, r in zip(todo, results, strict=True) if isinstance(r, BaseException)]
            if not failed:
                return
            rejected = [(m, r) for m, r in failed if isinstance(r, nats.js.errors.APIError)
                        and not isinstance(r, nats.js.errors.ServiceUnavailableError)]
            if rejected:
                m, r = rejected[0]
                raise MessageRejected(f"JetStream refused message {m.id} for queue {self.queue!r}: {r}")
            if time.monotonic() + delay > deadline:
                raise BrokerUnavailable(f"no PubAck from NATS at {mask_url(self.url)} within "
                                        f"{self.publish_timeout}s for {len(failed)} message(s): {failed[0][1]!r}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
            todo = [m for m, _ in failed]

    def publish(self, message: Outgoing) -> None:
        """Publish one message and wait for its PubAck (stored in the stream)."""
        self._run(self._publish((message,)), self.publish_timeout + 5)

    def publish_many(self, messages: Sequence[Outgoing]) -> None:
        """Publish the batch pipelined on the connection, then wait for every PubAck."""
        if messages:
            self._run(self._publish(messages), self.publish_timeout + 5)

    # --- consuming ----------------------------------------------------------------------------------
    # Our own pull protocol (nats-py's PullSubscription.fetch hands a batch over only when the whole pull
    # completes, with a task and a wait_for per message): a core subscription on our inbox ``<inbox>.*``
    # receives the JetStream messages of pull requests published to ``$JS.API.CONSUMER.MSG.NEXT`` with
    # reply ``<inbox>.<request number>``; its callback (loop thread) appends each message to a buffer that
    # the kernel's thread takes from under a threading.Condition.
    async def _subscription(self) -> Any:
        if self._sub is None:
            await self._ensure_topology()
            assert self._alock is not None
            async with self._alock:  # two threads' first fetches subscribe once
                if self._sub is None:
                    self.crash_charges.sweep()
                    self.journal.open()
                    nc = self._nc
                    self._inbox = nc.new_inbox()
                    self._sub = await nc.subscribe(self._inbox + ".*", cb=self._on_msg)
                    loop = asyncio.get_running_loop()
                    self._hb_task = [loop.create_task(self._heartbeat()), loop.create_task(self._ticker())]
        return self._sub

    async def _heartbeat(self) -> None:
        """Keep every held message (prefetched or running) from redelivery: +WPI restarts its ack_wait."""
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            self.journal.touch()
            for msg in list(self._held.values()):
                try:
                    await msg.in_progress()
                except Exception as exc:  # noqa: BLE001 - reconnecting: the next beat tries again
                    self.log.debug("in-progress signal failed: %s", exc)
                    break

    async def _ticker(self) -> None:
        """Every ``SETTLE_DELAY``: send acks no wake-up sent, forget pull requests past their expiry (a
        lost status), and ask for more when the window has room (loop thread)."""
        while True:
            await asyncio.sleep(SETTLE_DELAY)
            reqs = self._reqs
            if reqs:
                now = time.monotonic()
                for token in [t for t, r in reqs.items() if r[1] < now]:
                    del reqs[token]
                if not reqs:
                    self._credit = 0
            self._pull_ahead()  # sends the queued acks first

    async def _reconnected(self) -> None:
        """A new connection: the server dropped our pull requests with the old one (no interest)."""
        self._reqs.clear()
        self._credit = 0
        self._pull_ahead()

    def _pull_ahead(self) -> None:
        """Publish a pull request for the room left in the window (loop thread). The window bounds the
        messages held (buffered, prefetched by the kernel or running) plus the credit of the requests in
        flight; a new request goes out when a quarter of the window is free (any of it when nothing is on
        its way and the buffer is empty), so the next messages come while the kernel runs these. Sends
        the queued acks first (they free room)."""
        if self._settle:
            self._flush_settles()
        if self._closing or self._sub is None or time.monotonic() < self._backoff_until:
            return
        nc = self._nc
        if nc is None or not nc.is_connected:
            return
        room = self.window - len(self._held) - self._credit
        if self._waiting and not self._buffer:  # the kernel waits for this many: more than the window if need be
            room = max(room, self._demand - self._credit)
        if room <= 0 or len(self._reqs) >= MAX_REQUESTS:
            return
        if room < max(1, self.window // 4) and (self._credit or self._buffer):
            return  # not worth a request yet: messages are on their way or waiting in the buffer
        self._req_seq += 1
        token = str(self._req_seq)
        self._reqs[token] = [room, time.monotonic() + PULL_EXPIRES + PULL_GRACE]
        self._credit += room
        payload = b'{"batch":%d,"expires":%d}' % (room, int(PULL_EXPIRES * 1e9))
        asyncio.get_running_loop().create_task(
            _publish_quietly(nc, self._next_subject, payload, f"{self._inbox}.{token}"))

    async def _on_msg(self, msg: Any) -> None:
        """The inbox callback (loop thread, no task per message): a JetStream message into the buffer, or a
        pull request's status (no reply subject) into the request accounting."""
        if not msg.reply:
            self._on_status(msg)
            return
        if self._credit > 0:
            self._credit -= 1
        reqs = self._reqs
        if reqs:  # the server serves requests in order: the oldest one got it
            token = next(iter(reqs))
            r = reqs[token]
            r[0] -= 1
            if r[0] <= 0:
                del reqs[token]
        if self._closing:  # arrived while closing: not handed out, back to the stream at once
            asyncio.get_running_loop().create_task(_publish_quietly(self._nc, msg.reply, b"-NAK"))
            return
        d = self._delivery(msg)
        if d is not None:
            with self._cond:
                self._buffer.append(d)
                if self._waiting:
                    self._cond.notify()

    def _on_status(self, msg: Any) -> None:
        """``408`` (request expired) and ``409`` (request ended: leadership change, consumer deleted, too many
        waiting ...) end a request; ``Nats-Pending-Messages`` says how much of its batch was left. ``100``
        (idle heartbeat) is not used here (no ``idle_heartbeat`` asked)."""
        h = msg.headers or {}
        status = h.get("Status", "")
        if status == "100":
            return
        req = self._reqs.pop(msg.subject.rsplit(".", 1)[-1], None)
        pending = h.get("Nats-Pending-Messages")
        if pending is not None:
            try:
                self._credit -= int(pending)
            except ValueError:
                pass
        elif req is not None:
            self._credit -= req[0]
        if not self._reqs or self._credit < 0:
            self._credit = 0 if not self._reqs else max(0, self._credit)
        if status != "408":  # not a normal expiry: do not hammer the server with new requests
            self.log.debug("pull request ended: %s %s", status or msg.data[:200], h.get("Description", ""))
            self._backoff_until = time.monotonic() + 0.5
        self._pull_ahead()

    def _delivery(self, msg: Any) -> Delivery | None:
        """A Delivery for ``msg`` (loop thread), or ``None`` when it was held back (eta) or dead-lettered."""
        got = ack_info(msg.reply)
        if got is None:
            try:
                md = msg.metadata
            except Exception:  # noqa: BLE001 - not a JetStream message (should not happen on this subscription)
                return None
            got = md.num_delivered, md.sequence.stream
        count, seq = got
        h = msg.headers or {}
        eta = h.get(H_ETA)
        if eta is not None:
            try:
                remaining = float(eta) - time.time()
            except ValueError:
                remaining = 0.0
            if remaining > 0.001:
                asyncio.get_running_loop().create_task(msg.nak(delay=remaining))
                return None
        mid = h.get(H_ID) or f"nats-{self.stream}-{seq}"
        crashes = 0
        if count > 1:
            crashes, reason = self.crash_charges.redelivered(mid, self.max_crashes)
            if reason is not None:
                self.log.error("message %s dead-lettered: %s", mid, reason)
                asyncio.get_running_loop().create_task(self._dead(msg, mid, reason))
                return None
        if self.max_deliver and count > self.max_deliver:
            reason = f"max_deliver: delivered {count} times (broker_options max_deliver={self.max_deliver})"
            asyncio.get_running_loop().create_task(self._dead(msg, mid, reason))
            return None
        self._held[msg.reply] = msg
        return Delivery(mid, msg.data, msg, count, {"seq": seq}, crashes)

    def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        """Up to ``max_messages`` from the buffer, taken in the calling thread; when it is empty, wait on the
        condition the inbox callback signals (no hand-off to the loop thread)."""
        if self._closed:
            return []
        if self._sub is None:
            self._run(self._subscription())
        n = max(1, max_messages)
        cond, buf = self._cond, self._buffer
        with cond:
            if not buf:
                deadline = time.monotonic() + timeout
                self._waiting += 1
                self._demand = n
                io = self._io
                if io is not None:
                    try:
                        io.call_soon(self._pull_ahead)
                    except RuntimeError:  # the loop is closed
                        pass
                try:
                    while not buf and not self._closed:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        cond.wait(left)
                finally:
                    self._waiting -= 1
                if not buf:
                    nc = self._nc
                    if nc is not None and nc.is_closed and not self._closed:
                        raise BrokerUnavailable(f"the NATS connection to {mask_url(self.url)} is closed")
                    return []
            if n == 1:
                return [buf.popleft()]
            return [buf.popleft() for _ in range(min(n, len(buf)))]

    def _clear_charge(self, d: Delivery) -> None:
        if d.crashes or d.delivery_count > 1:
            self.crash_charges.forget(d.id)

    # --- settling -------------------------------------------------------------------------------------
    def started(self, delivery: Delivery) -> None:
        """Record that this delivery runs now: one write(2) to this consumer's journal (see the module doc)."""
        self.journal.started(delivery.id)

    def _queue_settle(self, items: Iterable[tuple[Any, bytes]]) -> None:
        """Queue acks / NAKs (any thread). Once a quarter of the window is queued, wake the loop thread (once
        for all queued so far): it sends them in one task and asks for more messages (they made room);
        fewer wait for its next tick (``SETTLE_DELAY``) or for a ``fetch`` that finds the buffer empty."""
        io = self._io
        if io is None or self._closed:
            return  # stale: the message is redelivered after its ack_wait
        with self._lock:
            settle = self._settle
            settle.extend(items)
            if self._flush_scheduled or len(settle) < self._wake_at:
                return
            self._flush_scheduled = True
        try:
            io.call_soon(self._pull_ahead)
        except RuntimeError:  # the loop is closed
            pass

    def _flush_settles(self) -> None:
        """Take every queued settle and send them in one task, in order (loop thread)."""
        with self._lock:
            items = list(self._settle)
            self._settle.clear()
            self._flush_scheduled = False
        if items and self._nc is not None:
            held = self._held
            for msg, _ in items:
                held.pop(msg.reply, None)
            asyncio.get_running_loop().create_task(_send_settles(self._nc, items))

    def ack(self, delivery: Delivery) -> None:
        self.journal.finished(delivery.id)
        self._clear_charge(delivery)
        self._queue_settle(((delivery.tag, b"+ACK"),))

    def ack_many(self, deliveries: Iterable[Delivery]) -> None:
        items = []
        for d in deliveries:
            self.journal.finished(d.id)
            self._clear_charge(d)
            items.append((d.tag, b"+ACK"))
        self._queue_settle(items)

    def nack(self, delivery: Delivery, requeue: bool = True, delay: float = 0.0) -> None:
        """Requeue (a NAK, with the delay held by the server) or drop (acked, so deleted) the message."""
        self.journal.finished(delivery.id)
        if not requeue:
            self._clear_charge(delivery)
            self._queue_settle(((delivery.tag, b"+ACK"),))
        elif delay > 0:
            self._queue_settle(((delivery.tag, b'-NAK {"delay": %d}' % int(delay * 1e9)),))
        else:
            self._queue_settle(((delivery.tag, b"-NAK"),))

    async def _dead(self, msg: Any, mid: str, reason: str) -> None:
        """Publish to the DLQ stream (PubAck awaited), then ack the original (loop thread)."""
        md = msg.metadata
        headers = {H_ID: mid, H_REASON: reason, H_FAILED_AT: f"{time.time():.3f}",
                   "Nats-Msg-Id": f"dlq:{mid}:{md.sequence.stream}:{md.num_delivered}"}
        self._held.pop(msg.reply, None)
        await self._connect()
        try:
            await self._js.publish(self.dlq_subject, msg.data, headers=headers, timeout=self.publish_timeout)
        except Exception as exc:  # noqa: BLE001 - not dead-lettered: redelivered after ack_wait
            self.log.warning("message %s not dead-lettered yet (%s); it will be redelivered", mid, exc)
            return
        await msg.ack()
        self.crash_charges.forget(mid)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self.journal.finished(delivery.id)
        if self._closed:
            return
        self._run(self._dead(delivery.tag, delivery.id, reason), self.publish_timeout + 5)

    # --- admin: count, purge, dead letters ------------------------------------------------------------
    def buffered(self) -> int:
        """Messages our pull requests brought that ``fetch`` has not returned yet: delivered, so in flight."""
        return len(self._buffer)

    def count(self) -> int:
        """Messages not yet delivered to the consumer group (``num_pending``). Messages waiting for a
        redelivery (a NAK delay, an expired ack_wait, a future ``eta``) are not counted."""
        async def run() -> int:
            await self._ensure_topology()
            info = await self._js.consumer_info(self.stream, CONSUMER)
            return int(info.num_pending or 0)

        return self._run(run())

    def purge(self) -> int:
        """Delete every message waiting for delivery (fetched and acked by a private subscription, so
        messages in flight on other consumers are left alone); returns how many."""
        async def run() -> int:
            await self._ensure_topology()
            psub = await self._js.pull_subscribe_bind(durable=CONSUMER, stream=self.stream)
            n = 0
            try:
                while True:
                    try:
                        msgs = await psub.fetch(256, timeout=0.5)
                    except (nats.errors.TimeoutError, asyncio.TimeoutError):
                        break
                    for m in msgs:
                        await m.ack()
                    n += len(msgs)
                await self._nc.flush(5)
            finally:
                await psub.unsubscribe()
            return n

        return self._run(run())

    async def _dlq_messages(self, limit: int | None) -> list[Any]:
        await self._ensure_topology()
        info = await self._js.stream_info(self.dlq_stream)
        st = info.state
        out: list[Any] = []
        if not st.messages:
            return out
        seq = st.first_seq
        while seq <= st.last_seq and (limit is None or len(out) < limit):
            try:
                out.append(await self._js.get_msg(self.dlq_stream, seq))
            except nats.js.errors.NotFoundError:
                pass
            seq += 1
        return out

    def dead_letters(self, limit: int = 100) -> list[DeadLetterRecord]:
        """The oldest ``limit`` dead letters (read without removing them)."""
        async def run() -> list[DeadLetterRecord]:
            out = []
            for m in await self._dlq_messages(limit):
                h = m.headers or {}
                try:
                    at = float(h.get(H_FAILED_AT, 0))
                except ValueError:
                    at = 0.0
                out.append(DeadLetterRecord(h.get(H_ID, ""), m.data or b"", h.get(H_REASON, ""), at, m.seq))
            return out

        return self._run(run())

    def replay_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        """Publish dead letters (all, or those with ``ids``) back to the queue (PubAck), then delete them."""
        wanted = set(ids) if ids is not None else None

        async def run() -> int:
            n = 0
            for m in await self._dlq_messages(None):
                mid = (m.headers or {}).get(H_ID, "")
                if wanted is not None and mid not in wanted:
                    continue
                await self._publish((Outgoing(mid, m.data or b""),))
                await self._js.delete_msg(self.dlq_stream, m.seq)
                n += 1
            return n

        return self._run(run(), self.publish_timeout * 4)

    def purge_dead_letters(self) -> int:
        async def run() -> int:
            await self._ensure_topology()
            info = await self._js.stream_info(self.dlq_stream)
            n = int(info.state.messages or 0)
            await self._js.purge_stream(self.dlq_stream)
            return n

        return self._run(run())

    def delete_streams(self) -> None:
        """Delete the queue's stream and its DLQ stream (tests and teardown)."""
        async def run() -> None:
            await self._connect()
            for name in (self.stream, self.dlq_stream):
                try:
                    await self._js.delete_stream(name)
                except nats.js.errors.NotFoundError:
                    pass
            self._topology = False

        self._run(run())

    # --- lifecycle ------------------------------------------------------------------------------------
    def close(self) -> None:
        """Send pending acks, NAK every held message (redelivered at once, uncharged), close the connection."""
        if self._closed:
            return
        io = self._io
        self._closed = True
        with self._cond:
            self._cond.notify_all()  # a fetch waiting for messages returns
        if io is not None:
            async def shutdown() -> None:
                for task in self._hb_task or ():
                    task.cancel()
                self._closing = True  # no more pull requests; what still arrives is NAKed at once
                self._flush_settles()
                nc = self._nc
                if nc is None:
                    return
                sub = self._sub
                if sub is not None:
                    try:
                        if nc.is_connected:  # a round trip: what the server sent before it has been read ...
                            await nc.flush(2)
                            for _ in range(1000):  # ... and handed to the callback
                                if not sub.pending_msgs:
                                    break
                                await asyncio.sleep(0)
                            await asyncio.sleep(0)
                        await sub.unsubscribe()  # the server drops our requests (no interest left)
                    except Exception:  # noqa: BLE001
                        pass
                with self._cond:
                    self._buffer.clear()  # held too: NAKed below
                await asyncio.sleep(0)  # the settle tasks just created run first
                for msg in list(self._held.values()):
                    await _publish_quietly(nc, msg.reply, b"-NAK")
                self._held.clear()
                try:
                    await nc.flush(2)
                except Exception:  # noqa: BLE001
                    pass
                try:
                    await nc.close()
                except Exception:  # noqa: BLE001
                    pass

            try:
                io.run(shutdown(), 10.0)
            except Exception as exc:  # noqa: BLE001 - closing must not fail: unacked messages come back anyway
                self.log.debug("nats close: %s", exc)
            io.stop(5.0)
        self.journal.close()

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(stream=self.stream, subject=self.subject, dlq=self.dlq_stream, lease=self.lease)
        return d


async def _send_settles(nc: Any, items: list[tuple[Any, bytes]]) -> None:
    """Publish each settle (``+ACK``, ``-NAK`` ...) to its message's reply subject: buffered by nats-py and
    written together by its flusher. A lost one means a redelivery (at-least-once)."""
    publish = nc.publish
    for msg, payload in items:
        try:
            await publish(msg.reply, payload)
        except Exception as exc:  # noqa: BLE001
            log.debug("settle publish failed: %s", exc)


async def _publish_quietly(nc: Any, subject: str, payload: bytes, reply: str = "") -> None:
    try:
        await nc.publish(subject, payload, reply=reply)
    except Exception as exc:  # noqa: BLE001 - a lost ack means a redelivery (at-least-once)
        log.debug("settle publish failed: %s", exc)

