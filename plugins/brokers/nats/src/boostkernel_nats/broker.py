"""The NATS JetStream broker (nats-py) behind the kernel's synchronous Broker interface.

nats-py is asyncio-only. Each broker runs its own event loop in a dedicated daemon thread (``boostkernel-nats``)
that owns the connection; the synchronous methods hand coroutines to it (``run_coroutine_threadsafe``) and
wait with a timeout. Acks, naks and in-progress signals are fire-and-forget publishes to the message's
reply subject, queued from any thread and sent by the loop in one batch (no round trip per ack).

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
from boostkernel.logs import mask, mask_url, queue_logger

DEFAULT_URL = "nats://127.0.0.1:4222"
H_ID, H_REASON, H_FAILED_AT, H_ETA = "Bk-Id", "Bk-Reason", "Bk-Failed-At", "Bk-Eta"
CONSUMER = "bk"
SETTLE_DELAY = 0.05
"""Seconds within which the loop's settle task sends acks that no fetch took along."""
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
        if self.url is None or not self.url.startswith(("nats://", "tls://", "ws://", "wss://")):
            raise ConfigError(f"nats broker needs a nats:// (or tls://) URL, got {mask_url(self.url)!r}")
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
        self.max_crashes = int(params.max_deliveries if params is not None else o.get("max_deliveries", 3))
        self.log = queue_logger(queue)
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
        self._psub: Any = None
        self._topology = False
        self._closed = False
        self._held: dict[str, Any] = {}
        """Messages fetched and not settled, by reply subject (loop thread only)."""
        self._settle: collections.deque[tuple[Any, bytes]] = collections.deque()
        self._buffer: collections.deque[Delivery] = collections.deque()
        """Pulled and not yet handed to the kernel (loop thread only); held, so heartbeated."""
        self._pull_task: asyncio.Task[None] | None = None
        self._pull_error: BaseException | None = None
        self._ahead_asked = False
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
                                    disconnected_cb=disconnected, error_cb=error)
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
    async def _subscription(self) -> Any:
        if self._psub is None:
            await self._ensure_topology()
            self.crash_charges.sweep()
            self.journal.open()
            self._psub = await self._js.pull_subscribe_bind(durable=CONSUMER, stream=self.stream)
            loop = asyncio.get_running_loop()
            self._hb_task = [loop.create_task(self._heartbeat()), loop.create_task(self._settler())]
        return self._psub

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

    async def _fetch(self, n: int, timeout: float) -> list[Delivery]:
        """Up to ``n`` deliveries from the local buffer, which pull requests (one at a time) fill. This
        consumer holds at most ``window`` messages (buffered, prefetched by the kernel or running; more only
        when the kernel asks for more at once): a pull ahead starts as soon as the buffer runs low and the
        window has room, so the next batch is on its way while the kernel runs this one (loop thread)."""
        psub = await self._subscription()
        if self._settle:  # acks of the previous batch go out with this pull request
            self._flush_settles()
        buf = self._buffer
        if not buf:
            deadline = time.monotonic() + timeout
            while not buf:
                if self._pull_error is not None:
                    exc, self._pull_error = self._pull_error, None
                    raise exc
                left = deadline - time.monotonic()
                if left < 0.01:
                    return []
                task = self._pull_task or self._start_pull(psub, max(n, self.window - len(self._held)), left)
                await asyncio.wait((task,), timeout=left)
        out = [buf.popleft() for _ in range(min(n, len(buf)))]
        self._pull_ahead()
        return out

    def _pull_ahead(self) -> None:
        """Start a pull for the room left in the window when a quarter of it is free (loop thread): the
        buffer is topped up while it still holds most of a window, not only once it is below half."""
        self._ahead_asked = False
        if self._pull_task is not None or self._closed or self._psub is None:
            return
        if self._settle:  # settled messages free room in the window
            self._flush_settles()
        room = self.window - len(self._held)
        if room >= max(1, self.window // 4):
            self._start_pull(self._psub, room, 1.0)

    def _start_pull(self, psub: Any, n: int, timeout: float) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._pull(psub, n, timeout))
        self._pull_task = task
        return task

    async def _pull(self, psub: Any, n: int, timeout: float) -> None:
        """One pull request (the only one in flight: a subscription serves one at a time) into the buffer."""
        try:
            try:
                msgs = await psub.fetch(n, timeout=timeout)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                return
            except nats.errors.ConnectionClosedError as exc:
                self._pull_error = exc
                return
            except Exception as exc:  # noqa: BLE001 - reconnecting, or a transient JetStream status
                self.log.debug("fetch failed (%s); retrying", exc)
                await asyncio.sleep(min(0.2, timeout))
                return
            now = time.time()
            buf = self._buffer
            for msg in msgs:
                d = self._delivery(msg, now)
                if d is not None:
                    buf.append(d)
        finally:
            self._pull_task = None

    def _delivery(self, msg: Any, now: float) -> Delivery | None:
        """A Delivery for ``msg`` (loop thread), or ``None`` when it was held back (eta) or dead-lettered."""
        got = ack_info(msg.reply or "")
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
                remaining = float(eta) - now
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
        """From the buffer in the calling thread when it holds messages (no hand-off to the loop thread:
        the pull ahead is requested, not awaited); else a pull request on the loop thread."""
        if self._closed:
            return []
        n = max(1, max_messages)
        buf = self._buffer
        if buf:
            out = []
            try:
                for _ in range(n):
                    out.append(buf.popleft())
            except IndexError:
                pass
            if out:
                if not self._ahead_asked and self._io is not None:
                    self._ahead_asked = True
                    try:
                        self._io.call_soon(self._pull_ahead)
                    except RuntimeError:  # the loop is closed
                        pass
                return out
        return self._run(self._fetch(n, timeout), timeout + self.publish_timeout)

    def _clear_charge(self, d: Delivery) -> None:
        if d.crashes or d.delivery_count > 1:
            self.crash_charges.forget(d.id)

    # --- settling -------------------------------------------------------------------------------------
    def started(self, delivery: Delivery) -> None:
        """Record that this delivery runs now: one write(2) to this consumer's journal (see the module doc)."""
        self.journal.started(delivery.id)

    def _queue_settle(self, items: Iterable[tuple[Any, bytes]]) -> None:
        """Queue acks / NAKs (any thread, no wake-up): the next fetch sends them before its pull request,
        or the loop's settle task within ``SETTLE_DELAY`` when no fetch comes."""
        if self._io is None or self._closed:
            return  # stale: the message is redelivered after its ack_wait
        with self._lock:
            self._settle.extend(items)

    async def _settler(self) -> None:
        while True:
            await asyncio.sleep(SETTLE_DELAY)
            if self._settle:
                self._flush_settles()
                self._pull_ahead()  # settled messages made room in the window

    def _flush_settles(self) -> None:
        """Take every queued settle and send them in one task, in order (loop thread)."""
        with self._lock:
            items = list(self._settle)
            self._settle.clear()
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
        if io is not None:
            async def shutdown() -> None:
                for task in self._hb_task or ():
                    task.cancel()
                pull = self._pull_task
                if pull is not None:  # a pull ahead in flight: let it land, so what it brings is NAKed below
                    await asyncio.wait((pull,), timeout=2.0)
                    pull.cancel()
                self._buffer.clear()  # held too: NAKed below
                self._flush_settles()
                await asyncio.sleep(0)  # the settle tasks just created run first
                nc = self._nc
                if nc is None:
                    return
                for msg in list(self._held.values()):
                    await _publish_quietly(nc, msg.reply, b"-NAK")
                self._held.clear()
                try:
                    if self._psub is not None:
                        await self._psub.unsubscribe()
                except Exception:  # noqa: BLE001
                    pass
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


async def _publish_quietly(nc: Any, subject: str, payload: bytes) -> None:
    try:
        await nc.publish(subject, payload)
    except Exception as exc:  # noqa: BLE001 - a lost ack means a redelivery (at-least-once)
        log.debug("settle publish failed: %s", exc)

