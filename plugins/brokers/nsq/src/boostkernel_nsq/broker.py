"""The NSQ broker (ansq, asyncio, on a private event-loop thread). **Not tested against an nsqd here.**

* Publishing: ``PUB`` / ``MPUB`` (one round trip for a batch) and ``DPUB`` for a future ``eta`` (nsqd holds
  it: native delay, up to nsqd's ``--max-req-timeout``, 1 h by default). nsqd answers ``OK`` after it
  accepted the message; whether that survives a crash of nsqd depends on ``--mem-queue-size`` (messages
  beyond it are on disk; ``--mem-queue-size=0`` puts every message on disk).
* Consuming: ``SUB topic channel`` and ``RDY max_in_flight``. ``ack`` is ``FIN`` after the task,
  ``nack(delay)`` is ``REQ`` with the delay, ``dead_letter`` publishes a JSON record (id, reason, time,
  body) to ``<topic>.dlq`` and then sends ``FIN`` (a crash in between leaves a duplicate, never a loss).
  nsqd requeues a message that is not finished within ``msg_timeout``: a thread of the event loop sends
  ``TOUCH`` for every held message every ``touch_interval`` (a heartbeat), so long tasks of a live worker
  keep their messages; a dead worker's connection closes and nsqd requeues its messages at once.
* NSQ messages carry no headers and nsqd assigns its own ids: the envelope id (and a crash count) travel
  in a one-line frame before the body (:mod:`boostkernel_nsq._common`). A foreign body is delivered as is,
  with the nsqd id. ``delivery_count`` is nsqd's ``attempts``.
* Crash loops: a redelivered message (``attempts > 1``) that a dead consumer's running journal on this
  host lists as running is published again with its crash count + 1 (then the original is finished), or
  dead-lettered at ``max_deliveries`` crashes; prefetched bystanders are not charged.
* ``count`` uses nsqd's HTTP API (``/stats``; port ``http_port``, 4151). No ``purge``: nsqd's
  ``/channel/empty`` also drops the in-flight and deferred messages of the channel.
  The dead-letter queue is a topic: it can be consumed but not browsed, so ``dead_letters()`` takes the
  records on a ``boostkernel-dlq`` channel and requeues them at once (their ``attempts`` grow).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import urllib.request
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

try:
    import ansq
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(f'the nsq broker needs ansq ({exc}): pip install "boostkernel[nsq]"') from exc

from boostkernel.broker import Broker, BrokerCapabilities, DeadLetterRecord, Delivery, Outgoing
from boostkernel.errors import BrokerUnavailable
from boostkernel.journal import CrashCharges, RunningJournal, consumer_id, crash_loop_reason, host_journal_dir
from boostkernel.logs import mask, mask_url

from ._common import dead_record, frame, parse, read_dead_record, unframe

T = TypeVar("T")
log = logging.getLogger("boostkernel.nsq")


class NsqBroker(Broker):
    """An NSQ topic + channel. At-least-once: FIN after the task, TOUCH heartbeats, REQ with delay."""

    name = "nsq"
    # purge=False: nsqd's /channel/empty also drops the channel's in-flight and deferred messages (Channel.Empty
    # re-initialises both queues), which the contract forbids: a running task's message would be gone
    capabilities = BrokerCapabilities(delay=True, durable=False, batch_publish=True, purge=False,
                                      recovery_seconds=5.0)
    default_url = "nsq://127.0.0.1:4150"

    check_at_decoration = True  # __init__ checks the URL and options and does not connect

    def __init__(self, queue: str, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(queue, url, params, **options)
        self.s = parse(self.url or self.default_url, queue, self.options)
        self.owner = consumer_id()
        self.journal_dir = host_journal_dir("nsq-" + queue)
        # nsqd redelivers after msg_timeout: whichever consumer lists it as running lost it (read every time)
        self._crashes = CrashCharges(self.journal_dir, self.owner, every=0.0, live_too=True)
        self.journal = RunningJournal(self.journal_dir, self.owner)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pub: Any = None
        self._con: Any = None
        self._held: dict[str, Any] = {}  # nsqd id -> message, touched by the heartbeat (loop thread)
        self._touch_task: Any = None
        self._closed = False

    # --- the event loop ---------------------------------------------------------------------------
    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if self._loop is None:
            with self._lock:
                if self._loop is None:
                    loop = asyncio.new_event_loop()
                    self._thread = threading.Thread(target=loop.run_forever, name="boostkernel-nsq", daemon=True)
                    self._thread.start()
                    self._loop = loop
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(timeout if timeout is not None else self.s.connect_timeout + 30)
        except TimeoutError:
            fut.cancel()
            raise BrokerUnavailable(f"nsqd at {mask_url(self.s.url)} did not answer in time") from None

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        if self._loop is not None and not self._loop.is_closed():
            asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _open(self) -> Any:
        try:
            return await asyncio.wait_for(ansq.open_connection(self.s.host, self.s.port, connection_options=
                                                               ansq.ConnectionOptions(auto_reconnect=False)),
                                          self.s.connect_timeout)
        except Exception as exc:  # noqa: BLE001 - unreachable, refused, timed out: retried by the caller
            raise BrokerUnavailable(f"cannot connect to nsqd at {mask_url(self.s.url)}: "
                                    f"{mask(str(exc) or type(exc).__name__)}") from None

    # --- publishing -------------------------------------------------------------------------------
    async def _publish(self, messages: Sequence[Outgoing]) -> None:
        if self._pub is None or self._pub.is_closed:
            self._pub = await self._open()
        now = time.time()
        now_msgs = [frame(m.id, m.body) for m in messages if not (m.eta and m.eta - now > 0.0005)]
        if len(now_msgs) == 1:
            _check(await self._pub.pub(self.s.topic, now_msgs[0]))
        elif now_msgs:
            _check(await self._pub.mpub(self.s.topic, *now_msgs))
        for m in messages:
            if m.eta and m.eta - now > 0.0005:
                _check(await self._pub.dpub(self.s.topic, frame(m.id, m.body), int((m.eta - now) * 1000)))

    def publish(self, message: Outgoing) -> None:
        self.publish_many((message,))

    def publish_many(self, messages: Sequence[Outgoing]) -> None:
        """``MPUB`` for the batch (``DPUB`` for each delayed message); returns after nsqd's ``OK``."""
        if self._closed:
            raise BrokerUnavailable(f"nsq broker for queue {self.queue!r} is closed")
        try:
            self._run(self._publish(messages))
        except BrokerUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - the connection broke: reconnect once (at-least-once)
            self._pub = None
            self.log.debug("publish failed (%s); reconnecting", exc)
            self._run(self._publish(messages))

    # --- consuming --------------------------------------------------------------------------------
    async def _subscribe(self) -> Any:
        if self._con is None or self._con.is_closed:
            self._held.clear()
            con = await self._open()
            _check(await con.sub(self.s.topic, self.s.channel))
            await con.rdy(self.s.max_in_flight)
            self._con = con
            if self._touch_task is None:
                self._touch_task = asyncio.ensure_future(self._touch_loop())
        return self._con

    async def _touch_loop(self) -> None:
        """The heartbeat: TOUCH every held message, so nsqd does not time out a live worker's tasks."""
        while not self._closed:
            await asyncio.sleep(self.s.touch_interval)
            for msg in list(self._held.values()):
                try:
                    await msg.touch()
                except Exception:  # noqa: BLE001 - connection gone: nsqd requeues them anyway
                    pass
            self.journal.touch()

    async def _take(self, n: int, timeout: float) -> list[Delivery]:
        con = await self._subscribe()
        q = con.message_queue
        out: list[Delivery] = []
        try:
            first = await asyncio.wait_for(q.get(), timeout)
        except asyncio.TimeoutError:
            return out
        pending = [first]
        while len(pending) < n and not q.empty():
            pending.append(q.get_nowait())
        for msg in pending:
            if msg is None:
                continue
            d = await self._deliver(msg)
            if d is not None:
                out.append(d)
        return out

    async def _deliver(self, msg: Any) -> Delivery | None:
        raw = msg.body if isinstance(msg.body, bytes) else str(msg.body).encode()
        mid, body, crashes = unframe(raw, str(msg.id))
        if msg.attempts > 1:
            owner = self._crashes.running_owner(mid)
            if owner is not None:
                await self._charge(msg, mid, body, owner, crashes + 1)
                return None
        self._held[str(msg.id)] = msg
        return Delivery(mid, body, msg, int(msg.attempts) + crashes, {"nsq_id": str(msg.id)}, crashes)

    async def _charge(self, msg: Any, mid: str, body: bytes, owner: str, crashes: int) -> None:
        self._crashes.discharge(owner, mid)  # charged once: its journal no longer lists it as running
        if self._pub is None or self._pub.is_closed:
            self._pub = await self._open()
        if crashes >= self.max_crashes:
            reason = crash_loop_reason(crashes, owner)
            self.log.error("message %s dead-lettered: %s", mid, reason)
            _check(await self._pub.pub(self.s.dlq_topic, dead_record(mid, body, reason, time.time())))
        else:
            _check(await self._pub.pub(self.s.topic, frame(mid, body, crashes)))
        await msg.fin()

    def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        if self._closed:
            return []
        if self.journal._fd == -1:  # noqa: SLF001 - opened once, before the first delivery
            self._crashes.sweep()
            self.journal.open()
        try:
            return self._run(self._take(max_messages, timeout), timeout + self.s.connect_timeout + 5)
        except BrokerUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken connection: reconnect at the next fetch
            self._con = None
            raise BrokerUnavailable(f"nsqd at {mask_url(self.s.url)}: {mask(str(exc))}") from None

    def started(self, delivery: Delivery) -> None:
        self.journal.started(delivery.id)

    def _settle(self, delivery: Delivery, coro_fn: Any) -> None:
        msg = delivery.tag
        self._held.pop(delivery.extra.get("nsq_id", ""), None)
        if self._closed or self._con is None or getattr(msg, "_connection", None) is not self._con:
            return  # stale: its connection is gone, nsqd requeued it
        self._spawn(_quiet(coro_fn(msg)))

    def ack(self, delivery: Delivery) -> None:
        self.journal.finished(delivery.id)
        self._settle(delivery, lambda m: m.fin())

    def nack(self, delivery: Delivery, requeue: bool = True, delay: float = 0.0) -> None:
        """``REQ`` with the delay (nsqd holds it); without requeue the message is finished (dropped)."""
        self.journal.finished(delivery.id)
        if requeue:
            self._settle(delivery, lambda m: m.req(int(delay * 1000)))
        else:
            self._settle(delivery, lambda m: m.fin())

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Publish the record to the DLQ topic (confirmed), then FIN the message."""
        self.journal.finished(delivery.id)

        async def run() -> None:
            if self._pub is None or self._pub.is_closed:
                self._pub = await self._open()
            _check(await self._pub.pub(self.s.dlq_topic, dead_record(delivery.id, delivery.body, reason, time.time())))

        self._run(run())
        self._settle(delivery, lambda m: m.fin())

    # --- HTTP: count and purge --------------------------------------------------------------------
    def _http(self, method: str, path: str) -> bytes:
        url = f"http://{self.s.host}:{self.s.http_port}{path}"
        req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
        try:
            with urllib.request.urlopen(req, timeout=self.s.connect_timeout) as resp:  # noqa: S310 - http only
                return bytes(resp.read())
        except OSError as exc:
            raise BrokerUnavailable(f"nsqd HTTP API at {self.s.host}:{self.s.http_port}: {exc}") from None

    def _depth(self, topic: str, channel: str) -> int:
        data = json.loads(self._http("GET", f"/stats?format=json&topic={topic}&channel={channel}"))
        return channel_depth(data, topic, channel)

    def count(self) -> int:
        """Ready plus deferred (delayed / requeued with a delay) messages of the channel (``/stats``)."""
        return self._depth(self.s.topic, self.s.channel)

    # --- dead letters: a topic, read on the boostkernel-dlq channel ---------------------------------
    async def _dlq_pass(self, wanted: set[str] | None, limit: int, replay: bool) -> tuple[list[DeadLetterRecord], int]:
        con = await self._open()
        records: list[DeadLetterRecord] = []
        moved = 0
        try:
            _check(await con.sub(self.s.dlq_topic, "boostkernel-dlq"))
            await con.rdy(min(limit, 2500))
            while len(records) < limit:
                try:
                    msg = await asyncio.wait_for(con.message_queue.get(), 1.0)
                except asyncio.TimeoutError:
                    break
                if msg is None:
                    break
                mid, body, reason, at = read_dead_record(msg.body)
                records.append(DeadLetterRecord(mid, body, reason, at))
                if replay and (wanted is None or mid in wanted):
                    if self._pub is None or self._pub.is_closed:
                        self._pub = await self._open()
                    _check(await self._pub.pub(self.s.topic, frame(mid, body)))
                    await msg.fin()
                    moved += 1
                else:
                    await msg.req(0)
        finally:
            await con.close()
        return records, moved

    def dead_letters(self, limit: int = 100) -> list[DeadLetterRecord]:
        return self._run(self._dlq_pass(None, limit, False), 60)[0]

    def replay_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        return self._run(self._dlq_pass(set(ids) if ids is not None else None, 10**9, True), 600)[1]

    def purge_dead_letters(self) -> int:
        n = self._depth(self.s.dlq_topic, "boostkernel-dlq")
        self._http("POST", f"/channel/empty?topic={self.s.dlq_topic}&channel=boostkernel-dlq")
        return n

    # --- lifecycle --------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connections (nsqd requeues every unfinished message at once) and stop the loop."""
        if self._closed:
            return
        self._closed = True
        if self._loop is not None:
            async def shut() -> None:
                for c in (self._con, self._pub):
                    if c is not None and not c.is_closed:
                        try:
                            await c.close()
                        except Exception:  # noqa: BLE001
                            pass
                if self._touch_task is not None:
                    self._touch_task.cancel()

            try:
                self._run(shut(), 15)
            except Exception:  # noqa: BLE001
                pass
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(5)
            if not self._loop.is_running():
                self._loop.close()
        self._held.clear()
        self.journal.close()

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(topic=self.s.topic, channel=self.s.channel, dlq_topic=self.s.dlq_topic)
        return d


def channel_depth(stats: dict[str, Any], topic: str, channel: str) -> int:
    """Waiting messages of ``channel`` in nsqd's ``/stats?format=json`` answer: ``depth`` (ready, memory and
    disk) + ``deferred_count``; the topic's depth if the channel does not exist yet; 0 if neither does."""
    for t in stats.get("topics") or []:
        if t.get("topic_name") != topic:
            continue
        for c in t.get("channels") or []:
            if c.get("channel_name") == channel:
                return int(c.get("depth", 0)) + int(c.get("deferred_count", 0))
        return int(t.get("depth", 0))
    return 0


def _check(resp: Any) -> None:
    ok = getattr(resp, "is_ok", None)
    if ok is False or (callable(ok) and not ok()):
        raise BrokerUnavailable(f"nsqd refused: {resp!r}")


async def _quiet(coro: Any) -> None:
    try:
        await coro
    except Exception as exc:  # noqa: BLE001 - a settle on a closed connection: nsqd requeues the message
        log.debug("nsq settle failed: %s", exc)


