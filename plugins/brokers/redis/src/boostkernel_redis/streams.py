"""The ``redis-streams`` broker: a consumer group on a Redis stream (at-least-once).

* The group ``bk`` is created at id ``0`` (``MKSTREAM``), so messages published before the first worker
  started are delivered, never skipped.
* **fetch** is ``XREADGROUP … >`` (the entry enters this consumer's pending list atomically); pending acks
  ride in the same pipeline. **ack** is ``XACK`` + ``XDEL`` (pipelined by a background thread), so the
  stream does not grow without bound.
* **Heartbeat-guided reclaim**: the per-process heartbeat thread refreshes the consumer's heartbeat key
  *and* resets the idle time of every entry this consumer holds (``XCLAIM … JUSTID`` to itself, which
  does not count as a delivery). So only entries of dead consumers ever become idle for ``dead_after``
  seconds, and the reaper (on a timer, on every worker, under a ``SET NX PX`` lock) takes exactly those
  with ``XAUTOCLAIM`` — live long tasks are never stolen.
* **Poison detection**: each entry carries ``c``, how often a worker died while *running* it. The reaper
  takes a dead consumer's entries (``XCLAIM``) and re-adds each as a new entry: the ones its journal
  (:mod:`boostkernel.journal`; the kernel calls :meth:`RedisStreamsBroker.started`) says were running get
  ``c + 1``, prefetched ones go back uncharged; at ``max_deliveries`` crashes it goes to the dead-letter
  queue with reason ``crash-loop``. Without the dead consumer's journal (another host) every entry it
  held is charged.
* nack/requeue and graceful close re-add the message as a new entry and ``XACK``+``XDEL`` the old one in
  one Lua call. Delayed messages wait in a sorted set that any worker moves from when due.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import orjson

from boostkernel.broker import Broker, BrokerCapabilities, DeadLetterRecord, Delivery, Outgoing
from boostkernel.journal import RunningJournal, read_journal, remove_journal
from boostkernel.leasing import heartbeat_options
from boostkernel.logs import mask_url

if TYPE_CHECKING:
    from redis.typing import StreamIdT

from ._common import (
    CONNECTION_ERRORS,
    DEFAULT_URL,
    AckBatching,
    client,
    consumer_id,
    key_base,
    maintenance,
    parse_value,
    pool_need,
    redis,
)
from .broker import _HOST_PREFIX, journal_dir

GROUP = "bk"

# KEYS: stream; ARGV: base, entry id, message id, deliveries, body, delay, crashes
_REQUEUE = r"""
local base = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if redis.call('XACK', KEYS[1], 'bk', ARGV[2]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
local delay = tonumber(ARGV[6])
if delay > 0 then
  redis.call('ZADD', base .. ':delayed', now + delay,
             '0\1' .. ARGV[3] .. '\n' .. ARGV[4] .. '\n' .. (ARGV[7] or '0') .. '\n' .. ARGV[5])
elseif ARGV[7] and ARGV[7] ~= '0' then
  redis.call('XADD', KEYS[1], '*', 'i', ARGV[3], 'd', ARGV[4], 'b', ARGV[5], 'c', ARGV[7])
else
  redis.call('XADD', KEYS[1], '*', 'i', ARGV[3], 'd', ARGV[4], 'b', ARGV[5])
end
return 1
"""

# KEYS: stream; ARGV: base, entry id, message id, deliveries, body, reason
_DEAD = r"""
local base = ARGV[1]
local t = redis.call('TIME')
redis.call('XACK', KEYS[1], 'bk', ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('ZADD', base .. ':dead', tonumber(t[1]) + tonumber(t[2]) / 1000000, ARGV[3])
redis.call('HSET', base .. ':dead:data', ARGV[3], '0\1' .. ARGV[3] .. '\n' .. ARGV[4] .. '\n0\n' .. ARGV[5])
redis.call('HSET', base .. ':dead:reason', ARGV[3], ARGV[6])
return 1
"""

# KEYS: stream; ARGV: base  -> moves due delayed messages into the stream; returns seconds to the next one
_MOVE_DUE = r"""
local base = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local delayed = base .. ':delayed'
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 1000)
for _, v in ipairs(due) do
  local a = string.find(v, '\n', 3, true)
  local b = string.find(v, '\n', a + 1, true)
  local c = string.find(v, '\n', b + 1, true)
  local cr = string.sub(v, b + 1, c - 1)
  if cr ~= '0' then
    redis.call('XADD', KEYS[1], '*', 'i', string.sub(v, 3, a - 1), 'd', string.sub(v, a + 1, b - 1), 'b',
               string.sub(v, c + 1), 'c', cr)
  else
    redis.call('XADD', KEYS[1], '*', 'i', string.sub(v, 3, a - 1), 'd', string.sub(v, a + 1, b - 1), 'b',
               string.sub(v, c + 1))
  end
  redis.call('ZREM', delayed, v)
end
local first = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
if #first > 0 then return tostring(tonumber(first[2]) - now) end
return ''
"""

# KEYS: stream; ARGV: base, all, ids...
_REPLAY = r"""
local base = ARGV[1]
local ids
if ARGV[2] == '1' then ids = redis.call('ZRANGE', base .. ':dead', 0, -1) else ids = {unpack(ARGV, 3)} end
local n = 0
for _, id in ipairs(ids) do
  local v = redis.call('HGET', base .. ':dead:data', id)
  if v then
    local a = string.find(v, '\n', 3, true)
    local b = string.find(v, '\n', a + 1, true)
    local c = string.find(v, '\n', b + 1, true)
    redis.call('XADD', KEYS[1], '*', 'i', id, 'd', string.sub(v, a + 1, b - 1), 'b', string.sub(v, c + 1))
    redis.call('ZREM', base .. ':dead', id)
    redis.call('HDEL', base .. ':dead:data', id)
    redis.call('HDEL', base .. ':dead:reason', id)
    n = n + 1
  end
end
return n
"""

# KEYS: stream; ARGV: base -> delete entries that are not pending (waiting ones) and the delayed set
_PURGE = r"""
local pending = {}
local n = 0
local start = '-'
while true do
  local p = redis.call('XPENDING', KEYS[1], 'bk', start, '+', 1000)
  if #p == 0 then break end
  for _, e in ipairs(p) do pending[e[1]] = true end
  if #p < 1000 then break end
  start = '(' .. p[#p][1]
end
start = '-'
while true do
  local entries = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', 1000)
  if #entries == 0 then break end
  for _, e in ipairs(entries) do
    if not pending[e[1]] then redis.call('XDEL', KEYS[1], e[1]) n = n + 1 end
  end
  if #entries < 1000 then break end
  start = '(' .. entries[#entries][1]
end
n = n + redis.call('ZCARD', ARGV[1] .. ':delayed')
redis.call('DEL', ARGV[1] .. ':delayed')
return n
"""


def _fields(fields: dict[bytes, bytes], entry_id: str) -> tuple[str, int, bytes, int]:
    """(message id, previous deliveries, body, crashes) of an entry; foreign entries become a JSON object."""
    body = fields.get(b"b")
    if body is None:
        data = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()}
        return f"x-{entry_id}", 0, orjson.dumps(data), 0
    mid = fields.get(b"i")
    return ((mid.decode() if mid else f"x-{entry_id}"), _int(fields.get(b"d")), body, _int(fields.get(b"c")))


def _int(v: bytes | None) -> int:
    try:
        return int(v or 0)
    except ValueError:
        return 0


class RedisStreamsBroker(AckBatching, Broker):
    """Options: ``heartbeat_interval`` (2 s), ``dead_after`` (10 s), ``reap_interval`` (2 s),
    ``ack_flush_interval`` (0.002 s), ``socket_timeout`` (10 s), ``key_prefix`` ("bk")."""

    name = "redis-streams"
    capabilities = BrokerCapabilities(
        ack=True, requeue=True, priority=False, delay=True, durable=True, count=True, purge=True,
        batch_publish=True, dead_letter=True, cross_process=True,
    )
    default_url = DEFAULT_URL
    default_store = "redis"

    def __init__(self, queue: str, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(queue, url, params, **options)
        o = self.options
        self.heartbeat_interval, self.dead_after, self.reap_interval = heartbeat_options(o)
        self.ack_flush_interval = float(o.get("ack_flush_interval", 0.002))
        self.delay_poll = float(o.get("delay_poll", 0.25))
        self.redis = client(self.url, o, pool_need(params))
        self._max_block = max(0.05, float(o.get("socket_timeout", 10.0)) - 1.0)
        self.base = key_base(queue, o)
        self.stream = self.base + ":stream"
        self.cid = consumer_id()
        self.journal_dir = journal_dir(self.base)
        self.journal = RunningJournal(self.journal_dir, self.cid)
        self._requeue = self.redis.register_script(_REQUEUE)
        self._dead = self.redis.register_script(_DEAD)
        self._move_due = self.redis.register_script(_MOVE_DUE)
        self._replay = self.redis.register_script(_REPLAY)
        self._purge = self.redis.register_script(_PURGE)
        self._held: dict[str, str] = {}  # message id -> entry id, for deliveries not yet acked
        self._held_lock = self._ack_guard = threading.Lock()
        self._acks: list[str] = []
        self._ack_wake = threading.Event()
        self._ack_thread: threading.Thread | None = None
        self._started = False
        self._start_lock = threading.Lock()
        self._maint_lock = threading.Lock()
        self._closed = False
        self._group_ready = False
        self._next_beat = self._next_reap = self._next_due = 0.0
        self._reap_not_before = 0.0

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            self.redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    # --- publishing -----------------------------------------------------------------------------
    def publish(self, message: Outgoing) -> None:
        self.publish_many([message])

    def publish_many(self, messages: Sequence[Outgoing]) -> None:
        self._ensure_group()
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        for m in messages:
            if "\n" in m.id:
                from boostkernel.errors import ConfigError

                raise ConfigError(f"message id {m.id!r} must not contain a newline")
            if m.eta is not None and m.eta > now:
                pipe.zadd(self.base + ":delayed", {b"0\x01%b\n0\n0\n%b" % (m.id.encode(), m.body): m.eta})
            else:
                pipe.xadd(self.stream, {"i": m.id, "d": 0, "b": m.body})
        pipe.execute()

    # --- consuming ------------------------------------------------------------------------------
    def _start(self) -> None:
        with self._start_lock:
            if self._started:
                return
            self._ensure_group()
            self.journal.open()
            self._beat()
            self._ack_thread = threading.Thread(target=self._ack_loop, daemon=True,
                                                name=f"boostkernel-redis-streams-acks-{self.queue}")
            self._ack_thread.start()
            maintenance.add(self)
            self._started = True

    def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        if not self._started:
            self._start()
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            block_cap = self._max_block
            if now >= self._next_due:
                nxt = self._move_due(keys=[self.stream], args=[self.base])
                self._next_due = now + (min(float(nxt), self.delay_poll) if nxt else self.delay_poll)
            block_cap = min(block_cap, max(0.001, self._next_due - now))
            left = deadline - now
            block_ms = max(1, int(min(left, block_cap) * 1000)) if left > 0 else None
            with self._held_lock:
                acks, self._acks = self._acks, []
            pipe = self.redis.pipeline(transaction=False)
            if acks:
                pipe.xack(self.stream, GROUP, *acks)
                pipe.xdel(self.stream, *acks)
            pipe.xreadgroup(GROUP, self.cid, {self.stream: ">"}, count=max_messages, block=block_ms)
            try:
                res = pipe.execute()[-1]
            except redis.ResponseError as exc:
                if "NOGROUP" in str(exc):  # the stream was deleted: recreate the group and retry
                    self._group_ready = False
                    self._ensure_group()
                    continue
                raise
            except BaseException:
                if acks:
                    with self._held_lock:
                        self._acks[:0] = acks
                raise
            out = []
            if res:
                entries = res[0][1] if isinstance(res, list) else next(iter(res.values()))[0]
                with self._held_lock:
                    for eid_b, fields in entries:
                        eid = eid_b.decode()
                        if not fields:  # deleted while pending
                            self._acks.append(eid)
                            continue
                        mid, d, body, c = _fields(fields, eid)
                        self._held[mid] = eid
                        out.append(Delivery(mid, body, eid, d + 1, crashes=c))
            if out:
                return out
            if time.monotonic() >= deadline or self._closed:
                return []

    def started(self, delivery: Delivery) -> None:
        """Record that this delivery runs now: one write(2) to this consumer's journal (boostkernel.journal)."""
        self.journal.started(delivery.tag)

    def ack(self, delivery: Delivery) -> None:
        self.journal.finished(delivery.tag)
        with self._held_lock:
            self._held.pop(delivery.id, None)
            self._acks.append(delivery.tag)
        if not self._ack_wake.is_set():
            self._ack_wake.set()

    def _pipe_acks(self, pipe: Any, ids: list[str]) -> None:
        pipe.xack(self.stream, GROUP, *ids)
        pipe.xdel(self.stream, *ids)

    def nack(self, delivery: Delivery, requeue: bool = True, delay: float = 0.0) -> None:
        if not requeue:
            self.ack(delivery)
            return
        self.journal.finished(delivery.tag)
        with self._held_lock:
            self._held.pop(delivery.id, None)
        self._requeue(keys=[self.stream], args=[self.base, delivery.tag, delivery.id, delivery.delivery_count,
                                                delivery.body, float(delay), delivery.crashes])

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self.journal.finished(delivery.tag)
        with self._held_lock:
            self._held.pop(delivery.id, None)
        self._dead(keys=[self.stream], args=[self.base, delivery.tag, delivery.id, delivery.delivery_count,
                                             delivery.body, reason])

    # --- heartbeat and reclaim ------------------------------------------------------------------------
    def _beat(self) -> None:
        with self._held_lock:
            held: list[StreamIdT] = list(self._held.values())
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(f"{self.base}:hb:{self.cid}", b"1", px=int(self.dead_after * 1000))
        pipe.sadd(self.base + ":consumers", self.cid)
        for i in range(0, len(held), 1000):  # our entries stay "fresh": only dead consumers' entries go idle
            pipe.xclaim(self.stream, GROUP, self.cid, 0, held[i:i + 1000], justid=True)
        pipe.execute()

    def maintain(self, now: float) -> None:
        with self._maint_lock:
            if not self._closed:
                self._maintain(now)

    def _maintain(self, now: float) -> None:
        try:
            if now >= self._next_beat:
                self._beat()
                self._next_beat = now + self.heartbeat_interval
            if now >= self._next_reap and now >= self._reap_not_before:
                self._next_reap = now + self.reap_interval
                self.reap()
        except CONNECTION_ERRORS:
            self._reap_not_before = time.monotonic() + self.dead_after
            self._next_beat = time.monotonic() + min(self.heartbeat_interval, 0.5)  # retry soon, without spinning
            raise

    def reap(self) -> tuple[int, int]:
        """Take entries idle for ``dead_after`` and add them again as new entries. Live consumers keep their
        entries fresh (heartbeat), so these belong to dead consumers - charged a crash only where the dead
        consumer's journal says it was running them - or to a live consumer that never received them (an
        ``XREADGROUP`` reply that was lost), which go back uncharged. Returns (returned, dead)."""
        lock = self.base + ":reaper"
        if not self.redis.set(lock, self.cid, nx=True, px=max(1, int(self.reap_interval * 900))):
            return -1, 0
        back = killed = charged = 0
        min_idle = int(self.dead_after * 1000)
        journals: dict[str, set[str] | None] = {}
        dead: set[str] = set()
        for _ in range(10):
            pend = cast("list[dict[str, Any]]",
                        self.redis.xpending_range(self.stream, GROUP, "-", "+", 100, idle=min_idle))
            if not pend:
                break
            by_consumer: dict[str, list[Any]] = {}
            for p in pend:
                c = p["consumer"].decode() if isinstance(p["consumer"], bytes) else p["consumer"]
                by_consumer.setdefault(c, []).append(p["message_id"])
            progressed = False
            for c, ids in by_consumer.items():
                if c not in journals:
                    if self.redis.exists(f"{self.base}:hb:{c}"):
                        journals[c] = set()  # alive: it never received these entries
                    else:
                        dead.add(c)
                        journals[c] = read_journal(self.journal_dir, c) if c.startswith(_HOST_PREFIX) else None
                ran = journals[c]
                claimed = cast("list[tuple[bytes, dict[bytes, bytes]]]",
                               self.redis.xclaim(self.stream, GROUP, self.cid, min_idle, ids))
                for eid_b, fields in claimed:
                    progressed = True
                    eid = eid_b.decode() if isinstance(eid_b, bytes) else eid_b
                    if not fields:  # deleted while pending
                        self.redis.xack(self.stream, GROUP, eid)
                        continue
                    mid, d, body, crashes = _fields(fields, eid)
                    if ran is None or eid in ran:
                        crashes += 1
                        charged += 1
                        if crashes >= self.max_crashes:
                            self._dead(keys=[self.stream], args=[
                                self.base, eid, mid, d + 1, body,
                                f"crash-loop: its worker died {crashes} time(s) while running it (last: {c})"])
                            killed += 1
                            continue
                    self._requeue(keys=[self.stream], args=[self.base, eid, mid, d + 1, body, 0, crashes])
                    back += 1
            if not progressed or len(pend) < 100:
                break
        for c in dead:
            remove_journal(self.journal_dir, c)
        self._forget_dead_consumers()
        if back or killed:
            self.log.warning("queue %r: returned %d message(s) of dead consumers (%d had been running)%s",
                             self.queue, back + killed, charged,
                             f", {killed} crash-looping message(s) to the dead-letter queue" if killed else "")
        return back, killed

    def _forget_dead_consumers(self) -> None:
        for c in self.redis.xinfo_consumers(self.stream, GROUP):
            name = c["name"].decode() if isinstance(c["name"], bytes) else c["name"]
            if int(c["pending"]) == 0 and name != self.cid and not self.redis.exists(f"{self.base}:hb:{name}"):
                self.redis.xgroup_delconsumer(self.stream, GROUP, name)
                self.redis.srem(self.base + ":consumers", name)

    # --- dead letters ------------------------------------------------------------------------------
    def dead_letters(self, limit: int = 100) -> list[DeadLetterRecord]:
        rows = cast("list[tuple[bytes, float]]", self.redis.zrange(self.base + ":dead", 0, limit - 1, withscores=True))
        if not rows:
            return []
        ids = [r[0] for r in rows]
        data = cast("list[bytes | None]", self.redis.hmget(self.base + ":dead:data", ids))
        reasons = cast("list[bytes | None]", self.redis.hmget(self.base + ":dead:reason", ids))
        out = []
        for (mid, t), v, reason in zip(rows, data, reasons, strict=True):
            if v is not None:
                out.append(DeadLetterRecord(mid.decode(), parse_value(v)[4], (reason or b"").decode(), float(t)))
        return out

    def replay_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        self._ensure_group()
        args = [self.base, "1"] if ids is None else [self.base, "0", *ids]
        return int(self._replay(keys=[self.stream], args=args))

    def purge_dead_letters(self) -> int:
        n = int(self.redis.zcard(self.base + ":dead"))
        self.redis.delete(self.base + ":dead", self.base + ":dead:data", self.base + ":dead:reason")
        return n

    # --- inspection and lifecycle -------------------------------------------------------------------
    def count(self) -> int:
        self._ensure_group()
        pipe = self.redis.pipeline(transaction=False)
        pipe.xlen(self.stream)
        pipe.xpending(self.stream, GROUP)
        pipe.zcard(self.base + ":delayed")
        xlen, pending, delayed = pipe.execute()
        return int(xlen) - int(pending["pending"]) + int(delayed)

    def in_flight(self) -> int:
        """Entries delivered and not yet acked (the group's pending entries list)."""
        self._ensure_group()
        return int(self.redis.xpending(self.stream, GROUP)["pending"])

    def purge(self) -> int:
        self._ensure_group()
        return int(self._purge(keys=[self.stream], args=[self.base]))

    def close(self) -> None:
        if self._closed:
            return
        with self._maint_lock:  # a heartbeat in progress must not re-register us after the release below
            self._closed = True
        maintenance.remove(self)
        if not self._started:
            return
        self._ack_wake.set()
        if self._ack_thread is not None:
            self._ack_thread.join(5)
        try:
            self.flush_acks()
            # return what this consumer still holds (prefetched, never started) as new entries
            while True:
                pend = cast("list[dict[str, Any]]",
                            self.redis.xpending_range(self.stream, GROUP, "-", "+", 1000, consumername=self.cid))
                if not pend:
                    break
                ids = [p["message_id"] for p in pend]
                entries = cast("list[tuple[bytes, dict[bytes, bytes]]]", self.redis.xrange(self.stream, ids[0], ids[-1]))
                by_id = {e: f for e, f in entries}
                for p in pend:
                    eid = p["message_id"]
                    fields = by_id.get(eid)
                    if not fields:
                        self.redis.xack(self.stream, GROUP, eid)
                        continue
                    mid, d, body, c = _fields(fields, eid.decode())
                    self._requeue(keys=[self.stream], args=[self.base, eid, mid, d, body, 0, c])
            pipe = self.redis.pipeline(transaction=False)
            pipe.xgroup_delconsumer(self.stream, GROUP, self.cid)
            pipe.delete(f"{self.base}:hb:{self.cid}")
            pipe.srem(self.base + ":consumers", self.cid)
            pipe.execute()
            self.journal.close()
        except CONNECTION_ERRORS as exc:
            self.log.warning("queue %r: could not return held entries on close (%s); they are reclaimed after %ss",
                             self.queue, exc, self.dead_after)

    def describe(self) -> dict[str, Any]:
        return {"broker": self.name, "queue": self.queue, "url": mask_url(self.url), "consumer": self.cid}
