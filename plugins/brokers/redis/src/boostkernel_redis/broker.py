"""The ``redis`` broker: a reliable list (at-least-once) with heartbeats, a reaper, priority and native delay.

Keys of queue ``q`` (all share the Redis Cluster hash tag ``{q}``, so they live in one slot)::

    bk:{q}:q, bk:{q}:q:1 … bk:{q}:q:9   ready lists, one per priority level (0 is bk:{q}:q); RPUSH / LPOP
    bk:{q}:delayed                       sorted set of messages with a future eta (score = eta)
    bk:{q}:inflight:<consumer>           hash message id → element: what that consumer holds
    bk:{q}:landing:<consumer>            list BLMOVE drops into while an idle consumer blocks
    bk:{q}:consumers, bk:{q}:hb:<c>      registered consumers; heartbeat key with a PX expiry
    bk:{q}:dead, :dead:data, :dead:reason  dead-letter queue (zset by time, bodies, reasons)

* **fetch** is one Lua call: it applies piggy-backed acks, moves due delayed messages, then moves up to N
  messages from the highest priority list down into this consumer's in-flight hash and returns them.
  When nothing is ready it blocks with ``BLMOVE`` (atomic too) into the consumer's landing list.
* **ack** deletes the id from the in-flight hash; acks are pipelined by a background thread (or ride on
  the next fetch), always after the task finished.
* A **heartbeat** thread (one per process) refreshes ``hb:<consumer>``; the **reaper** runs on a timer on
  every worker under a lock (``SET NX PX``) and returns the in-flight and landing messages of consumers
  whose heartbeat expired to the front of their queue, counting a crash. A message whose worker died
  ``max_deliveries`` times goes to the dead-letter queue (``crash-loop``). A live worker's long task is
  never redelivered: nothing here depends on how long a task runs.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any, cast

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from boostkernel.broker import Broker, BrokerCapabilities, DeadLetterRecord, Delivery, Outgoing
from boostkernel.journal import RunningJournal, read_journal, remove_journal
from boostkernel.leasing import heartbeat_options
from boostkernel.logs import mask_url

from ._common import (
    CONNECTION_ERRORS,
    DEFAULT_URL,
    MAX_PRIORITY,
    AckBatching,
    PublishBuffer,
    backoff_delays,
    client,
    consumer_id,
    element,
    is_cluster,
    key_base,
    maintenance,
    own_connection,
    parse_value,
    pool_need,
)

_HOST_PREFIX = socket.gethostname() + ":"  # consumer ids start with the host name (see consumer_id)

# Helpers shared by the scripts. ARGV[1] is always the key base ("bk:{q}").
_LUA_HEAD = r"""
local base = ARGV[1]
local function qkey(p) if p == '0' then return base .. ':q' end return base .. ':q:' .. p end
local function now() local t = redis.call('TIME') return tonumber(t[1]) + tonumber(t[2]) / 1000000 end
-- value = prio .. "\1" .. id .. "\n" .. deliveries .. "\n" .. crashes .. "\n" .. body
local function split(v)
  local a = string.find(v, '\n', 3, true)
  local b = string.find(v, '\n', a + 1, true)
  local c = string.find(v, '\n', b + 1, true)
  return string.sub(v, 3, a - 1), tonumber(string.sub(v, a + 1, b - 1)), tonumber(string.sub(v, b + 1, c - 1)),
         string.sub(v, c + 1)
end
local function rebuild(v, id, d, c, body) return string.sub(v, 1, 1) .. '\1' .. id .. '\n' .. d .. '\n' .. c .. '\n' .. body end
local function chunked(cmd, key, list, first, last)
  for i = first, last, 500 do redis.call(cmd, key, unpack(list, i, math.min(i + 499, last))) end
end
-- "\1" .. id .. "\n" .. deliveries .. "\n" .. crashes .. "\n" .. body, with a non-empty id and numbers
local function wellformed(el)
  local a = string.find(el, '\n', 2, true)
  if not a or a < 3 then return false end
  local b = string.find(el, '\n', a + 1, true)
  if not b or not tonumber(string.sub(el, a + 1, b - 1)) then return false end
  local c = string.find(el, '\n', b + 1, true)
  return c ~= nil and tonumber(string.sub(el, b + 1, c - 1)) ~= nil
end
local function dead(id, v, reason, t)
  redis.call('ZADD', base .. ':dead', t, id)
  redis.call('HSET', base .. ':dead:data', id, v)
  redis.call('HSET', base .. ':dead:reason', id, reason)
end
"""

# ARGV: base, consumer, n, number of acks, ack ids...
_FETCH = _LUA_HEAD + r"""
local cid, n, nacks = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local inflight = base .. ':inflight:' .. cid
if nacks > 0 then chunked('HDEL', inflight, ARGV, 5, 4 + nacks) end
local t = now()
local delayed = base .. ':delayed'
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', t, 'LIMIT', 0, 1000)
if #due > 0 then
  for _, v in ipairs(due) do redis.call('RPUSH', qkey(string.sub(v, 1, 1)), string.sub(v, 2)) end
  chunked('ZREM', delayed, due, 1, #due)
end
local out = {}
local function take(list, p, k)
  local got = redis.call('LPOP', list, k)
  if not got then return end
  local fields = {}
  for _, el in ipairs(got) do
    if string.byte(el, 1) ~= 1 then  -- a foreign producer's plain JSON: give it an id
      el = '\1x-' .. redis.call('INCR', base .. ':seq') .. '\n0\n0\n' .. el
    elseif not wellformed(el) then  -- framing byte but no valid header: recorded in the DLQ, never dropped
      local id = 'x-bad-' .. redis.call('INCR', base .. ':seq')
      dead(id, '0\1' .. id .. '\n0\n0\n' .. el, 'malformed element: it starts with the framing byte \\x01 but has '
           .. 'no valid "id\\ndeliveries\\ncrashes\\n" header', t)
      el = nil
    end
    if el then
      local v = p .. el
      local e = string.find(v, '\n', 3, true)
      fields[#fields + 1] = string.sub(v, 3, e - 1)
      fields[#fields + 1] = v
      out[#out + 1] = v
    end
  end
  if #fields > 0 then chunked('HSET', inflight, fields, 1, #fields) end
end
take(base .. ':landing:' .. cid, '0', n)
for p = 9, 0, -1 do
  if #out >= n then break end
  take(qkey(tostring(p)), tostring(p), n - #out)
end
local nxt = ''
if #out == 0 then
  local first = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
  if #first > 0 then nxt = tostring(tonumber(first[2]) - t) end
end
return {out, nxt}
"""

# ARGV: base, consumer, id, delay
_NACK = _LUA_HEAD + r"""
local inflight = base .. ':inflight:' .. ARGV[2]
local v = redis.call('HGET', inflight, ARGV[3])
if not v then return 0 end  -- already returned by the reaper: it is back in the queue
redis.call('HDEL', inflight, ARGV[3])
local id, d, c, body = split(v)
local nv = rebuild(v, id, d + 1, c, body)
local delay = tonumber(ARGV[4])
if delay > 0 then redis.call('ZADD', base .. ':delayed', now() + delay, nv)
else redis.call('RPUSH', qkey(string.sub(nv, 1, 1)), string.sub(nv, 2)) end
return 1
"""

# ARGV: base, consumer, id, reason
_DEAD = _LUA_HEAD + r"""
local inflight = base .. ':inflight:' .. ARGV[2]
local v = redis.call('HGET', inflight, ARGV[3])
if not v then return 0 end
redis.call('HDEL', inflight, ARGV[3])
dead(ARGV[3], v, ARGV[4], now())
return 1
"""

# ARGV: base, reaper id, max crashes, lock ms, then per dead consumer: id, "1" if its journal was read
# (else every held message is charged), number of running keys, keys ("id:delivery") ...
_REAP = _LUA_HEAD + r"""
if not redis.call('SET', base .. ':reaper', ARGV[2], 'NX', 'PX', ARGV[4]) then return {-1, 0, 0} end
local maxc = tonumber(ARGV[3])
local t = now()
local back, killed, charged = 0, 0, 0
local i = 5
while i <= #ARGV do
  local c, exact, nkeys = ARGV[i], ARGV[i + 1] == '1', tonumber(ARGV[i + 2])
  local running = {}
  for k = i + 3, i + 2 + nkeys do running[ARGV[k]] = true end
  i = i + 3 + nkeys
  if redis.call('EXISTS', base .. ':hb:' .. c) == 0 then
    local landing = base .. ':landing:' .. c
    for _, el in ipairs(redis.call('LRANGE', landing, 0, -1)) do  -- never handed to the worker
      redis.call('LPUSH', base .. ':q', el)
      back = back + 1
    end
    local inflight = base .. ':inflight:' .. c
    local all = redis.call('HGETALL', inflight)
    for j = 2, #all, 2 do
      local v = all[j]
      local id, d, cr, body = split(v)
      local ran = (not exact) or running[id .. ':' .. (d + 1)]
      if ran then cr = cr + 1 charged = charged + 1 end
      local nv = rebuild(v, id, d + 1, cr, body)
      if ran and cr >= maxc then
        dead(id, nv, 'crash-loop: its worker died ' .. cr .. ' time(s) while running it (last: ' .. c .. ')', t)
        killed = killed + 1
      else
        redis.call('LPUSH', qkey(string.sub(nv, 1, 1)), string.sub(nv, 2))
        back = back + 1
      end
    end
    redis.call('DEL', inflight, landing)
    redis.call('SREM', base .. ':consumers', c)
  end
end
return {back, killed, charged}
"""

# ARGV: base, consumer, number of acks, ack ids...  (graceful close: return what we hold)
_RELEASE = _LUA_HEAD + r"""
local cid, nacks = ARGV[2], tonumber(ARGV[3])
local inflight, landing = base .. ':inflight:' .. cid, base .. ':landing:' .. cid
if nacks > 0 then chunked('HDEL', inflight, ARGV, 4, 3 + nacks) end
local back = 0
for _, el in ipairs(redis.call('LRANGE', landing, 0, -1)) do redis.call('LPUSH', base .. ':q', el) back = back + 1 end
local all = redis.call('HGETALL', inflight)
for i = 2, #all, 2 do
  local v = all[i]
  redis.call('LPUSH', qkey(string.sub(v, 1, 1)), string.sub(v, 2))
  back = back + 1
end
redis.call('DEL', inflight, landing, base .. ':hb:' .. cid)
redis.call('SREM', base .. ':consumers', cid)
return back
"""

# ARGV: base, all ("1"/"0"), ids...
_REPLAY = _LUA_HEAD + r"""
local ids
if ARGV[2] == '1' then ids = redis.call('ZRANGE', base .. ':dead', 0, -1) else ids = {unpack(ARGV, 3)} end
local n = 0
for _, id in ipairs(ids) do
  local v = redis.call('HGET', base .. ':dead:data', id)
  if v then
    local _, d, c, body = split(v)
    local nv = rebuild(v, id, d, 0, body)
    redis.call('RPUSH', qkey(string.sub(nv, 1, 1)), string.sub(nv, 2))
    redis.call('ZREM', base .. ':dead', id)
    redis.call('HDEL', base .. ':dead:data', id)
    redis.call('HDEL', base .. ':dead:reason', id)
    n = n + 1
  end
end
return n
"""

_COUNT = _LUA_HEAD + r"""
local n = redis.call('ZCARD', base .. ':delayed')
for p = 0, 9 do n = n + redis.call('LLEN', qkey(tostring(p))) end
return n
"""

_PURGE = _LUA_HEAD + r"""
local n = redis.call('ZCARD', base .. ':delayed')
redis.call('DEL', base .. ':delayed')
for p = 0, 9 do local k = qkey(tostring(p)) n = n + redis.call('LLEN', k) redis.call('DEL', k) end
return n
"""

_IN_FLIGHT = _LUA_HEAD + r"""
local n = 0
for _, c in ipairs(redis.call('SMEMBERS', base .. ':consumers')) do
  n = n + redis.call('HLEN', base .. ':inflight:' .. c) + redis.call('LLEN', base .. ':landing:' .. c)
end
return n
"""


class RedisBroker(AckBatching, Broker):
    """Reliable Redis list. Options (``broker_options``):

    ``heartbeat_interval`` (2 s), ``dead_after`` (heartbeat expiry: 10 s), ``reap_interval`` (2 s),
    ``idle_poll`` (0.5 s: longest block before higher-priority lists are looked at again),
    ``ack_flush_interval`` (0.002 s), ``auto_batch`` (False: buffer ``publish()`` and send in pipelines),
    ``publish_retry_timeout`` (30 s), ``socket_timeout`` (10 s), ``socket_connect_timeout`` (5 s),
    ``key_prefix`` ("bk").
    """

    name = "redis"
    capabilities = BrokerCapabilities(
        ack=True, requeue=True, priority=True, delay=True, durable=True, count=True, purge=True,
        batch_publish=True, dead_letter=True, cross_process=True, fetch_any_thread=True,
    )
    default_url = DEFAULT_URL
    default_store = "redis"

    def __init__(self, queue: str, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(queue, url, params, **options)
        o = self.options
        self.heartbeat_interval, self.dead_after, self.reap_interval = heartbeat_options(o)
        self.idle_poll = float(o.get("idle_poll", 0.5))
        self.ack_flush_interval = float(o.get("ack_flush_interval", 0.002))
        self.publish_retry_timeout = float(o.get("publish_retry_timeout", 30.0))
        self.max_batch = int(o.get("max_batch", 1000))
        self.redis = client(self.url, o, pool_need(params))
        # socket_timeout bounds every read, including blocking ones: never block longer than it allows
        self._max_block = max(0.05, float(o.get("socket_timeout", 10.0)) - 1.0)
        self.base = key_base(queue, o)
        self._q0 = self.base + ":q"
        self.cid = consumer_id()
        self._landing = f"{self.base}:landing:{self.cid}"
        self._inflight = f"{self.base}:inflight:{self.cid}"
        self.journal_dir = journal_dir(self.base)
        self.journal = RunningJournal(self.journal_dir, self.cid)
        self._scripts = {name: self.redis.register_script(src) for name, src in (
            ("fetch", _FETCH), ("nack", _NACK), ("dead", _DEAD), ("reap", _REAP), ("release", _RELEASE),
            ("replay", _REPLAY), ("count", _COUNT), ("purge", _PURGE), ("in_flight", _IN_FLIGHT))}
        # The fetch script runs on a client without redis-py's automatic retry: a retried EVALSHA after a lost
        # reply would move a second batch and leave the first one recorded in our in-flight hash but unknown
        # to us. A failed fetch instead marks the state suspect and the next fetch reconciles (see _reconcile).
        self._fetch_client = client(self.url, {**o, "command_retries": 0})
        self._fetch_script = self._fetch_client.register_script(_FETCH)
        self._cluster = is_cluster(self.redis)
        self._acks: list[str] = []
        self._known: set[str] = set()  # ids handed out and not yet settled in Redis (guarded by _ack_lock)
        self._suspect = False
        self._ack_lock = self._ack_guard = threading.Lock()
        self._ack_wake = threading.Event()
        self._ack_thread: threading.Thread | None = None
        self._started = False
        self._start_lock = threading.Lock()
        self._maint_lock = threading.Lock()
        self._closed = False
        self._next_beat = self._next_reap = 0.0
        self._reap_not_before = 0.0
        self._buffer: PublishBuffer | None = None
        self._local = threading.local()
        self._direct = own_connection(self.redis) is not None  # plain pool: publish on a thread's own socket
        if o.get("auto_batch"):
            self._buffer = PublishBuffer(self._send_batch, queue, float(o.get("batch_interval", 0.002)))

    # --- publishing -----------------------------------------------------------------------------
    def _qkey(self, priority: int) -> str:
        p = 0 if priority <= 0 else min(int(priority), MAX_PRIORITY)
        return self._q0 if p == 0 else f"{self._q0}:{p}"

    def publish(self, message: Outgoing) -> None:
        mid = message.id
        if "\n" in mid:
            element(mid, b"")  # raises the ConfigError
        el = b"\x01%b\n0\n0\n%b" % (mid.encode(), message.body)  # the element format (see _common)
        eta = message.eta
        if eta is not None and eta > time.time():
            p = 0 if message.priority <= 0 else min(int(message.priority), MAX_PRIORITY)
            item: tuple[str, Any] = ("", (b"%d" % p + el, eta))
        else:
            item = (self._qkey(message.priority) if message.priority else self._q0, el)
        if self._buffer is not None:
            self._buffer.add(item)
            return
        if item[0]:
            try:
                self._rpush(item[0], el)
            except CONNECTION_ERRORS:
                self._retrying(self._rpush, item[0], el)
        else:
            self._retrying(self._send_batch, [item])

    def _thread_connection(self, slot: str, client: Any) -> Any:
        """This thread's own connection of ``client`` for ``slot`` (made on first use, and again in a forked
        child: a socket is never shared with the parent)."""
        mine = self._local.__dict__.get(slot)
        if mine is None or mine[0] != os.getpid():
            mine = self._local.__dict__[slot] = (os.getpid(), own_connection(client))
        return mine[1]

    def _rpush(self, key: str, value: bytes) -> None:
        """One RPUSH on this thread's own connection: the lean path of a one-by-one ``publish``
        (no pool checkout, no per-command instrumentation); errors close the connection."""
        if not self._direct:  # a cluster (the key's slot picks the node) or Sentinel
            self.redis.rpush(key, value)
            return
        conn = self._thread_connection("publish", self.redis)
        try:
            conn.send_command("RPUSH", key, value)
            conn.read_response()
        except BaseException:
            conn.disconnect()
            raise

    def publish_many(self, messages: Sequence[Outgoing]) -> None:
        now = time.time()
        items: list[tuple[str, Any]] = []
        for m in messages:
            el = element(m.id, m.body)
            if m.eta is not None and m.eta > now:
                p = 0 if m.priority <= 0 else min(int(m.priority), MAX_PRIORITY)
                items.append(("", (b"%d" % p + el, m.eta)))
            else:
                items.append((self._qkey(m.priority) if m.priority else self._q0, el))
        if self._buffer is not None:
            for it in items:
                self._buffer.add(it)
            return
        self._retrying(self._send_batch, items)

    def _send_batch(self, items: list[tuple[str, Any]]) -> None:
        """One round trip: ``RPUSH key e1 … eN`` per key (in order), ``ZADD`` for delayed ones."""
        pipe = self.redis.pipeline(transaction=False)
        run_key: str | None = None
        run: list[Any] = []
        for key, value in items:
            if key != run_key or len(run) >= 1000:
                if run:
                    self._flush_run(pipe, run_key, run)
                run_key, run = key, []
            run.append(value)
        if run:
            self._flush_run(pipe, run_key, run)
        pipe.execute()

    def _flush_run(self, pipe: Any, key: str | None, run: list[Any]) -> None:
        if key:
            pipe.rpush(key, *run)
        else:
            pipe.zadd(self.base + ":delayed", {v: eta for v, eta in run})

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Send every auto-batched message now (no-op without ``auto_batch``). True when nothing is left."""
        return True if self._buffer is None else self._buffer.flush(timeout)

    def _retrying(self, fn: Any, *args: Any) -> Any:
        """Call ``fn``; on connection errors retry with capped backoff + jitter up to ``publish_retry_timeout``."""
        deadline = time.monotonic() + self.publish_retry_timeout
        nxt = backoff_delays()
        while True:
            try:
                return fn(*args)
            except CONNECTION_ERRORS as exc:
                delay = nxt()
                if time.monotonic() + delay > deadline:
                    from boostkernel.errors import BrokerUnavailable

                    raise BrokerUnavailable(f"Redis at {mask_url(self.url)} unreachable for "
                                            f"{self.publish_retry_timeout:.0f}s: {exc}") from None
                self.log.warning("publish to %r failed (%s); retrying in %.2fs", self.queue, exc, delay)
                time.sleep(delay)

    # --- consuming ------------------------------------------------------------------------------
    def _start(self) -> None:
        with self._start_lock:
            if self._started:
                return
            self.journal.open()
            self._beat()
            self._ack_thread = threading.Thread(target=self._ack_loop, daemon=True,
                                                name=f"boostkernel-redis-acks-{self.queue}")
            self._ack_thread.start()
            maintenance.add(self)
            self._started = True

    def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        if not self._started:
            self._start()
        n = max(1, min(max_messages, self.max_batch))
        deadline = time.monotonic() + timeout
        wait: float | None = None
        while True:
            if self._suspect:
                orphans = self._reconcile()
                if orphans:
                    return orphans
            if wait is None:
                with self._ack_lock:
                    acks, self._acks = self._acks, []
            else:
                acks = []  # not held back for a whole wait: the ack flusher sends the pending ones
            try:
                if self._direct:  # a plain pool (not a cluster, not Sentinel): one lean round trip
                    got, nxt = self._fetch_round(wait, n, acks)
                    wait = None
                else:
                    if wait is not None and self._cluster:  # a cluster pipeline refuses EVALSHA: two round trips
                        self._fetch_client.blmove(self._q0, self._landing, wait, "LEFT", "RIGHT")
                        wait = None
                    if wait is None:
                        got, nxt = self._fetch_script(keys=[self._q0],
                                                      args=[self.base, self.cid, n, len(acks), *acks])
                    else:
                        # Idle: BLMOVE into our landing list (atomic) and, queued behind it on the same
                        # connection, the fetch script, which Redis runs as soon as BLMOVE returns: it takes what
                        # landed. One round trip from "published" to "delivered" instead of a wake-up and a fetch.
                        pipe = self._fetch_client.pipeline(transaction=False)
                        pipe.blmove(self._q0, self._landing, wait, "LEFT", "RIGHT")
                        self._fetch_script(keys=[self._q0], args=[self.base, self.cid, n, len(acks), *acks],
                                           client=pipe)
                        got, nxt = pipe.execute()[1]
                        wait = None
            except BaseException:
                self._suspect = True  # the script may have run: reconcile before the next fetch
                if acks:
                    with self._ack_lock:
                        self._acks[:0] = acks
                raise
            if got or acks:
                out = []
                for v in got:
                    head, d, c, body = v.split(b"\n", 3)
                    out.append(Delivery(head[2:].decode(), body, head[0] - 48, int(d) + 1, crashes=int(c)))
                with self._ack_lock:
                    known = self._known
                    if acks:
                        known.difference_update(acks)
                    known.update([x.id for x in out])
                if out:
                    return out
            left = deadline - time.monotonic()
            if left <= 0.001 or self._closed:
                return []
            block = min(left, self.idle_poll, self._max_block)
            if nxt:
                block = min(block, max(float(nxt), 0.001))
            if block < 0.01:
                time.sleep(block)
                continue
            wait = block  # the next round trip blocks until a message is ready (see above)

    def _fetch_round(self, wait: float | None, n: int, acks: list[str]) -> tuple[list[bytes], Any]:
        """The fetch script, after a BLMOVE into our landing list when ``wait`` is set (Redis runs the script as
        soon as the BLMOVE returns: it takes what landed), in one round trip on this thread's own connection. The lean path of a plain pool: redis-py's pipeline costs ~0.15 ms a round
        trip, which an idle worker pays between the message's arrival and its start."""
        conn = self._thread_connection("fetch", self._fetch_client)
        evalsha = ("EVALSHA", self._fetch_script.sha, 1, self._q0, self.base, self.cid, n, len(acks), *acks)
        cmds = [evalsha] if wait is None else [("BLMOVE", self._q0, self._landing, "LEFT", "RIGHT", wait), evalsha]
        replies: list[Any] = []
        try:
            # What the pool does at checkout: a socket the server closed (or with stray data) reads ready, so
            # reconnect before sending rather than fail the round trip (nothing was sent on it yet).
            if conn.can_read(timeout=0):  # (connects a new connection)
                conn.disconnect()
        except (RedisConnectionError, OSError):
            conn.disconnect()
        try:
            conn.send_packed_command(conn.pack_commands(cmds))
            for _ in cmds:  # read every reply, errors too, so the connection stays in step
                try:
                    replies.append(conn.read_response())
                except ResponseError as exc:
                    replies.append(exc)
        except BaseException:
            conn.disconnect()
            raise
        if isinstance(replies[-1], NoScriptError):  # the server lost its script cache (a restart, SCRIPT FLUSH)
            self._fetch_client.script_load(_FETCH)
            return self._fetch_round(None, n, acks)  # what a BLMOVE moved waits in the landing list
        for r in replies:
            if isinstance(r, Exception):
                raise r
        got, nxt = replies[-1]
        return got, nxt

    def _reconcile(self) -> list[Delivery]:
        """After a fetch whose reply was lost: deliver what our in-flight hash holds that we never received."""
        ids = [i.decode() for i in cast("list[bytes]", self.redis.hkeys(self._inflight))]
        with self._ack_lock:
            orphans = [i for i in ids if i not in self._known]  # acked ids stay known until their HDEL is sent
        out: list[Delivery] = []
        if orphans:
            for v in cast("list[bytes | None]", self.redis.hmget(self._inflight, orphans)):
                if v is not None:
                    p, mid, d, c, body = parse_value(v)
                    out.append(Delivery(mid, body, p, d + 1, crashes=c))
            with self._ack_lock:
                self._known.update(d.id for d in out)
            self.log.warning("queue %r: %d fetched message(s) whose reply was lost are delivered now", self.queue,
                             len(out))
        self._suspect = False
        return out

    def started(self, delivery: Delivery) -> None:
        """Record that this delivery runs now: one write(2) to this consumer's journal (boostkernel.journal)."""
        self.journal.started(f"{delivery.id}:{delivery.delivery_count}")

    def ack(self, delivery: Delivery) -> None:
        self.journal.finished(f"{delivery.id}:{delivery.delivery_count}")
        with self._ack_lock:
            self._acks.append(delivery.id)
        if not self._ack_wake.is_set():
            self._ack_wake.set()

    def ack_many(self, deliveries: Any) -> None:
        deliveries = list(deliveries)
        for d in deliveries:
            self.journal.finished(f"{d.id}:{d.delivery_count}")
        with self._ack_lock:
            self._acks.extend(d.id for d in deliveries)
        self._ack_wake.set()

    def _pipe_acks(self, pipe: Any, ids: list[str]) -> None:
        pipe.hdel(self._inflight, *ids)

    def _acks_sent(self, ids: list[str]) -> None:
        with self._ack_lock:
            self._known.difference_update(ids)

    def nack(self, delivery: Delivery, requeue: bool = True, delay: float = 0.0) -> None:
        self.journal.finished(f"{delivery.id}:{delivery.delivery_count}")
        if not requeue:
            self.ack(delivery)
            return
        self._scripts["nack"](keys=[self._q0], args=[self.base, self.cid, delivery.id, float(delay)])
        with self._ack_lock:
            self._known.discard(delivery.id)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self.journal.finished(f"{delivery.id}:{delivery.delivery_count}")
        self._scripts["dead"](keys=[self._q0], args=[self.base, self.cid, delivery.id, reason])
        with self._ack_lock:
            self._known.discard(delivery.id)

    # --- heartbeat and the reaper (called by the per-process maintenance thread) --------------------
    def _beat(self) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(f"{self.base}:hb:{self.cid}", b"1", px=int(self.dead_after * 1000))
        pipe.sadd(self.base + ":consumers", self.cid)
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
            # After an outage every heartbeat may have expired: give the other workers time to beat again
            # before this one judges them dead.
            self._reap_not_before = time.monotonic() + self.dead_after
            self._next_beat = time.monotonic() + min(self.heartbeat_interval, 0.5)  # retry soon, without spinning
            raise

    def reap(self) -> tuple[int, int]:
        """Return in-flight messages of dead consumers; dead-letter crash loops. Returns (returned, dead).

        A crash is charged only to the messages a dead consumer was running (its journal, readable when it
        ran on this host); without its journal every message it held is charged.
        """
        args: list[Any] = []
        dead = dead_consumers(self.redis, self.base)
        for c in dead:
            ran = read_journal(self.journal_dir, c) if c.startswith(_HOST_PREFIX) else None
            args += [c, "0" if ran is None else "1", len(ran or ()), *(ran or ())]
        if not dead:
            return 0, 0
        back, killed, charged = self._scripts["reap"](
            keys=[self._q0],
            args=[self.base, self.cid, self.max_crashes, max(1, int(self.reap_interval * 900)), *args])
        if back >= 0:
            for c in dead:
                remove_journal(self.journal_dir, c)
        if back > 0 or killed > 0:
            self.log.warning("queue %r: returned %d message(s) of dead workers to the queue (%d had been running)"
                             "%s", self.queue, back + killed, charged,
                             f", {killed} crash-looping message(s) to the dead-letter queue" if killed else "")
        return int(back), int(killed)

    # --- dead letters ------------------------------------------------------------------------------
    def dead_letters(self, limit: int = 100) -> list[DeadLetterRecord]:
        rows = cast("list[tuple[bytes, float]]", self.redis.zrange(self.base + ":dead", 0, limit - 1, withscores=True))
        if not rows:
            return []
        ids = [r[0] for r in rows]
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(self.base + ":dead:data", ids)
        pipe.hmget(self.base + ":dead:reason", ids)
        data, reasons = pipe.execute()
        out = []
        for (mid, t), v, reason in zip(rows, data, reasons, strict=True):
            if v is None:
                continue
            _, _, _, _, body = parse_value(v)
            out.append(DeadLetterRecord(mid.decode(), body, (reason or b"").decode(), float(t)))
        return out

    def replay_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        args = [self.base, "1"] if ids is None else [self.base, "0", *ids]
        return int(self._scripts["replay"](keys=[self._q0], args=args))

    def purge_dead_letters(self) -> int:
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(self.base + ":dead")
        pipe.delete(self.base + ":dead", self.base + ":dead:data", self.base + ":dead:reason")
        return int(pipe.execute()[0])

    # --- inspection and lifecycle -------------------------------------------------------------------
    def count(self) -> int:
        return int(self._scripts["count"](keys=[self._q0], args=[self.base]))

    def in_flight(self) -> int:
        """Messages held by registered consumers (in-flight hashes and landing lists)."""
        return int(self._scripts["in_flight"](keys=[self._q0], args=[self.base]))

    def purge(self) -> int:
        return int(self._scripts["purge"](keys=[self._q0], args=[self.base]))

    def close(self) -> None:
        if self._closed:
            return
        if self._buffer is not None and not self._buffer.flush(self.publish_retry_timeout):
            self.log.error("queue %r: %d auto-batched message(s) could not be sent before close", self.queue,
                           self._buffer.pending())
        with self._maint_lock:  # a heartbeat in progress must not re-register us after the release below
            self._closed = True
        maintenance.remove(self)
        if not self._started:
            return
        self._ack_wake.set()
        if self._ack_thread is not None:
            self._ack_thread.join(5)
        with self._ack_lock:
            acks, self._acks = self._acks, []
        try:
            n = self._scripts["release"](keys=[self._q0], args=[self.base, self.cid, len(acks), *acks])
            self.journal.close()
            if n:
                self.log.info("queue %r: returned %d unstarted message(s) on close", self.queue, n)
        except CONNECTION_ERRORS as exc:
            logging.getLogger("boostkernel.redis").warning(
                "queue %r: could not return held messages on close (%s); the reaper returns them after %ss",
                self.queue, exc, self.dead_after)

    def describe(self) -> dict[str, Any]:
        return {"broker": self.name, "queue": self.queue, "url": mask_url(self.url), "consumer": self.cid}


def journal_dir(base: str) -> str:
    """Where consumers of key base ``base`` on this host keep their running journals."""
    import re
    import tempfile

    return os.path.join(tempfile.gettempdir(), "boostkernel-running", re.sub(r"[^A-Za-z0-9_.-]", "_", base))


def dead_consumers(r: Any, base: str) -> list[str]:
    """Registered consumers of ``base`` whose heartbeat key expired."""
    members = [m.decode() for m in r.smembers(base + ":consumers")]
    if not members:
        return []
    pipe = r.pipeline(transaction=False)
    for m in members:
        pipe.exists(f"{base}:hb:{m}")
    return [m for m, alive in zip(members, pipe.execute(), strict=True) if not alive]
