"""The Redis store: results with TTL and push waits, status records, counters, flags, locks, heartbeats.

Keys (prefix ``bk:s:`` by default): ``result:<task id>`` (JSON record, PX ttl), ``notify:<task id>`` (a
one-element list pushed when a *finished* record lands; waiters block on ``BLMOVE notify notify`` —
the element stays, so every waiter wakes, not only the first), ``<key>`` for ``set/get/incr``,
``lock:<name>`` for leases, ``worker:<id>`` plus the ``workers`` sorted set for heartbeats.

Every process and machine that reaches the Redis server shares this state, so the controls that need
coordination (global rate limit, dedup, pause, cancel, schedules firing once) can stand on it.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Sequence
from typing import Any, cast

import orjson
from redis.exceptions import NoScriptError

from boostkernel.store import Store, StoreCapabilities

from ._common import DEFAULT_URL, client, is_cluster, pool_need

_FINISHED = ("success", "failure", "skipped", "dead", "expired", "revoked", "duplicate")

_INCR = """
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if ARGV[2] ~= '' and redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return v
"""
_LOCK = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0
"""
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


#: Set (without TTL) by the first task-record search: from then on ``put_result`` also indexes records.
_SEARCH_FLAG = "search:on"

#: One record's index entries, in one command (standalone Redis; a cluster uses a pipeline without the word and
#: id indexes, since those are read with multi-key commands). ARGV: prefix, task id, publish time, queue,
#: status, word-set TTL (ms), trim-before time ('' = no trim), then the record's words.
_INDEX = """
local p, tid, at = ARGV[1], ARGV[2], ARGV[3]
local seen = redis.call('ZADD', p .. 'idx:all', 'CH', at, tid) == 0
redis.call('ZADD', p .. 'idx:s:' .. ARGV[5], at, tid)
if ARGV[5] ~= 'running' then redis.call('ZREM', p .. 'idx:s:running', tid) end
if not seen then
  -- the task's first record (a later one, its final record, has the same queue, id and arguments)
  redis.call('ZADD', p .. 'idx:q:' .. ARGV[4], at, tid)
  redis.call('ZADD', p .. 'idx:ids', 0, tid)
  for i = 8, #ARGV do
    local k = p .. 'idx:w:' .. ARGV[i]
    if redis.call('ZADD', k, at, tid) == 1 and redis.call('ZCARD', k) == 1 then
      redis.call('ZADD', p .. 'idx:words', 0, ARGV[i])
    end
    redis.call('PEXPIRE', k, ARGV[6])
  end
end
if ARGV[7] ~= '' then
  local old = redis.call('ZRANGEBYSCORE', p .. 'idx:all', '-inf', ARGV[7], 'LIMIT', 0, 5000)
  if #old > 0 then
    redis.call('ZREM', p .. 'idx:ids', unpack(old))
    redis.call('ZREM', p .. 'idx:all', unpack(old))
  end
  redis.call('ZREMRANGEBYSCORE', p .. 'idx:q:' .. ARGV[4], '-inf', ARGV[7])
  redis.call('ZREMRANGEBYSCORE', p .. 'idx:s:' .. ARGV[5], '-inf', ARGV[7])
end
return 0
"""
_WORD = re.compile(r"[^\W_]+")
#: Words indexed per record (the first ones of its arguments) and the longest word indexed.
MAX_WORDS, MAX_WORD_LEN = 32, 64
#: A query word stands for at most this many indexed words that start with it (the first ones in
#: lexicographic order): a one-letter query does not union thousands of sets.
MAX_PREFIX_WORDS = 100
#: A task-id prefix search looks at most at this many ids (the greatest first: with UUIDv7 ids, the newest).
MAX_ID_PREFIX = 10_000
#: A search that walks records newest first (a text common in the records it filters) reads at most this many.
MAX_WALK = 100_000


def words(args: Any, kwargs: Any) -> list[str]:
    """The words a record's arguments are indexed by: runs of letters and digits in the lowercased JSON of
    ``[args, kwargs]`` (object keys included; its first 4 KB), at most ``MAX_WORDS`` distinct ones of up to
    ``MAX_WORD_LEN`` characters."""
    head = orjson.dumps([args, kwargs], default=repr)[:4096].decode(errors="ignore")  # large arguments: their start
    out = dict.fromkeys(w for w in _WORD.findall(head.lower()) if len(w) <= MAX_WORD_LEN)
    return list(out)[:MAX_WORDS]


def _dumps(v: Any) -> bytes:
    return orjson.dumps(v, default=repr)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisStore(Store):
    name = "redis"
    capabilities = StoreCapabilities(cross_process=True, cross_host=True, durable=True, push_wait=True)
    default_url = DEFAULT_URL

    def __init__(self, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(url, params, **options)
        opts = dict(params.broker_options) if params is not None and url == params.broker_url else {}
        opts.update(options)
        self.redis = client(self.url, opts, pool_need(params))
        self._cluster = is_cluster(self.redis)
        self.prefix = str(opts.get("key_prefix", "bk")) + ":s:"
        self._max_block = max(0.05, float(opts.get("socket_timeout", 10.0)) - 1.0)
        self._incr = self.redis.register_script(_INCR)
        self._lock = self.redis.register_script(_LOCK)
        self._unlock = self.redis.register_script(_UNLOCK)
        self._search_on = False
        self._search_checked = 0.0
        self._search_writes = 0
        self._index_script = self.redis.register_script(_INDEX)

    def _k(self, key: str) -> str:
        return self.prefix + key

    # --- results ------------------------------------------------------------------------------------
    def put_result(self, task_id: str, record: dict[str, Any], ttl: float) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self._k(f"result:{task_id}"), _dumps(record), px=_ms(ttl))
        if self._indexing():
            self._index(pipe, task_id, record, ttl)
        if record.get("status") in _FINISHED:
            nkey = self._k(f"notify:{task_id}")
            pipe.delete(nkey)
            pipe.rpush(nkey, b"1")
            pipe.pexpire(nkey, _ms(min(ttl, 600.0)))
        try:
            pipe.execute()
        except NoScriptError:  # the server lost its script cache (a restart): load it, write again (idempotent)
            self.redis.script_load(_INDEX)
            self.put_result(task_id, record, ttl)

    def get_result(self, task_id: str, timeout: float = 0.0) -> dict[str, Any] | None:
        key = self._k(f"result:{task_id}")
        deadline = time.monotonic() + timeout
        while True:
            raw = self.redis.get(key)
            rec: dict[str, Any] | None = orjson.loads(raw) if raw is not None else None
            if rec is not None and rec.get("status") != "running":
                return rec
            left = deadline - time.monotonic()
            if left <= 0:
                return rec
            # Block until the finished record is announced (pushed, not polled); the element stays in the
            # list, so every waiter on this task wakes.
            nkey = self._k(f"notify:{task_id}")
            # redis-py annotates the timeout as int; BLMOVE takes fractional seconds (Redis >= 6)
            self.redis.blmove(nkey, nkey, max(0.01, min(left, self._max_block)), "LEFT", "RIGHT")

    def get_results(self, task_ids: Sequence[str], timeout: float = 0.0) -> list[dict[str, Any] | None]:
        deadline = time.monotonic() + timeout
        return [self.get_result(t, max(0.0, deadline - time.monotonic())) for t in task_ids]

    # --- task-record search (the dashboard) ------------------------------------------------------
    # Sorted sets of task ids scored by publish time: ``idx:all``, ``idx:q:<queue>``, ``idx:s:<status>``.
    # They are candidates only (a record that changed status or expired is filtered out when read, and its
    # stale entry removed). ``put_result`` writes them only once someone searched this store.
    def _indexing(self) -> bool:
        now = time.monotonic()
        if not self._search_on and now >= self._search_checked:
            self._search_checked = now + 10.0
            self._search_on = bool(self.redis.exists(self._k(_SEARCH_FLAG)))
        return self._search_on

    def _index(self, pipe: Any, task_id: str, record: dict[str, Any], ttl: float) -> None:
        at = float(record.get("published_at") or record.get("started_at") or time.time())
        status = str(record.get("status"))
        self._search_writes += 1
        # entries older than the records' TTL point at nothing: trimmed every 1000 writes
        trim = time.time() - ttl - 3600.0 if self._search_writes % 1000 == 0 else None
        if not self._cluster:
            # EVALSHA itself: a Script object in a pipeline costs a SCRIPT EXISTS round trip per execute
            pipe.evalsha(self._index_script.sha, 0, self.prefix, task_id, at, str(record.get("queue")), status,
                         _ms(ttl + 3600.0), "" if trim is None else trim,
                         *words(record.get("args"), record.get("kwargs")))
            return
        keys = [self._k("idx:all"), self._k(f"idx:q:{record.get('queue')}"), self._k(f"idx:s:{status}")]
        for key in keys:
            pipe.zadd(key, {task_id: at})
        if status != "running":
            pipe.zrem(self._k("idx:s:running"), task_id)
        if trim is not None:
            for key in keys:
                pipe.zremrangebyscore(key, "-inf", trim)

    def prepare_search(self) -> None:
        """Turn indexing on for every writer of this store and index the records already there (a SCAN:
        about a minute per million records, once)."""
        if self._search_on:
            return
        if not self._cluster:
            self.redis.script_load(_INDEX)
        if self.redis.set(self._k(_SEARCH_FLAG), b"1", nx=True):
            n = len(self.prefix) + len("result:")
            batch: list[str] = []
            for key in self.redis.scan_iter(match=self.prefix + "result:*", count=2000):
                batch.append(key.decode()[n:])
                if len(batch) == 2000:
                    self._backfill(batch)
                    batch = []
            if batch:
                self._backfill(batch)
        self._search_on = True

    def _backfill(self, task_ids: list[str]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for tid, rec in zip(task_ids, self.get_many([f"result:{t}" for t in task_ids]), strict=True):
            if isinstance(rec, dict):
                self._index(pipe, tid, rec, 86400.0)
        pipe.execute()

    def search_results(self, queue: str | None = None, status: str | None = None, since: float | None = None,
                       until: float | None = None, task_id: str | None = None, text: str | None = None,
                       limit: int = 100) -> list[dict[str, Any]]:
        """Task records matching every given filter, newest published first.

        ``task_id``: an id or its prefix (through the lexicographic id index: at most ``MAX_ID_PREFIX`` ids,
        the greatest first). ``text``: found case-insensitively in the JSON of the arguments, *and* each of
        its words starts a word of the arguments (through the word index; on a cluster, and for a word that
        most of the filtered records have, the records are read newest first, at most ``MAX_WALK``)."""
        self.prepare_search()
        needle = text.lower() if text else None

        def match(r: Any) -> bool:
            if not isinstance(r, dict):
                return False
            at = r.get("published_at") or r.get("started_at") or 0.0
            return not ((queue and r.get("queue") != queue) or (status and r.get("status") != status)
                        or (since is not None and at < since) or (until is not None and at > until)
                        or (task_id and not str(r.get("task_id", "")).startswith(task_id))
                        or (needle and needle not in orjson.dumps([r.get("args"), r.get("kwargs")],
                                                                  default=repr).decode().lower()))

        if task_id and len(task_id) >= 36:
            rec = self.get(f"result:{task_id}")
            return [rec] if match(rec) else []
        if task_id and not self._cluster:
            return self._by_id_prefix(task_id, match, limit)
        if task_id:  # a cluster: no id index, a SCAN of the matching keys
            recs = self.get_many([k for k in self.keys(f"result:{task_id}")])
            found = [r for r in recs if match(r)]
            found.sort(key=lambda r: r.get("published_at") or r.get("started_at") or 0.0, reverse=True)
            return found[:limit]
        filters = [self._k(f"idx:q:{queue}")] if queue else []
        if status:
            filters.append(self._k(f"idx:s:{status}"))
        zkey = filters[0] if filters else self._k("idx:all")
        lo = "-inf" if since is None else since
        hi = "+inf" if until is None else until
        if needle and not self._cluster:
            qwords = _WORD.findall(needle)
            if qwords:
                return self._by_words(qwords, filters, zkey, lo, hi, match, limit)
        return self._walk(zkey, lo, hi, match, limit)

    def _walk(self, zkey: str, lo: Any, hi: Any, match: Any, limit: int, max_read: int = MAX_WALK,
              drop_stale: bool = True) -> list[dict[str, Any]]:
        """Read the ids of ``zkey`` newest first (scores within lo..hi), their records, keep the matching."""
        out: list[dict[str, Any]] = []
        offset, chunk, read = 0, max(2 * limit, 500), 0
        while len(out) < limit and read < max_read:
            ids = [i.decode() for i in cast("list[bytes]", self.redis.zrevrangebyscore(
                zkey, hi, lo, start=offset, num=min(chunk, max_read - read)))]
            if not ids:
                break
            offset += len(ids)
            read += len(ids)
            recs = self.get_many([f"result:{i}" for i in ids])
            stale = [i for i, r in zip(ids, recs, strict=True) if r is None]
            if stale and drop_stale:
                self._drop_stale(stale, zkey)
                offset -= len(stale)
            out.extend(r for r in recs if match(r))
            chunk = min(chunk * 2, 20_000)
        return out[:limit]

    def _drop_stale(self, ids: list[str], zkey: str | None = None) -> None:
        """Remove the ids of expired records from ``zkey`` and the time and id indexes."""
        pipe = self.redis.pipeline(transaction=False)
        for key in {zkey or self._k("idx:all"), self._k("idx:all")}:
            pipe.zrem(key, *ids)
        if not self._cluster:
            pipe.zrem(self._k("idx:ids"), *ids)
        pipe.execute()

    def _by_id_prefix(self, prefix: str, match: Any, limit: int) -> list[dict[str, Any]]:
        ids = [i.decode() for i in cast("list[bytes]", self.redis.zrevrangebylex(
            self._k("idx:ids"), b"[" + prefix.encode() + b"\xff", b"[" + prefix.encode(), 0, MAX_ID_PREFIX))]
        if not ids:
            return []
        scores = cast("list[float | None]", self.redis.zmscore(self._k("idx:all"), ids))
        ranked = [i for _, i in sorted(((s or 0.0, i) for s, i in zip(scores, ids, strict=True)), reverse=True)]
        out: list[dict[str, Any]] = []
        step = max(limit, 100)
        for n in range(0, len(ranked), step):
            chunk = ranked[n:n + step]
            recs = self.get_many([f"result:{i}" for i in chunk])
            stale = [i for i, r in zip(chunk, recs, strict=True) if r is None]
            if stale:
                self._drop_stale(stale)
            out.extend(r for r in recs if match(r))
            if len(out) >= limit:
                break
        return out[:limit]

    def _by_words(self, qwords: list[str], filters: list[str], zkey: str, lo: Any, hi: Any, match: Any,
                  limit: int) -> list[dict[str, Any]]:
        vocab = self._k("idx:words")
        pipe = self.redis.pipeline(transaction=False)
        for w in qwords:
            pipe.zrangebylex(vocab, b"[" + w.encode(), b"[" + w.encode() + b"\xff", 0, MAX_PREFIX_WORDS)
        groups = [[m.decode() for m in ms] for ms in pipe.execute()]
        if not all(groups):
            return []
        pipe = self.redis.pipeline(transaction=False)
        for g in groups:
            for w in g:
                pipe.zcard(self._k(f"idx:w:{w}"))
        pipe.zcard(zkey)
        cards = cast("list[int]", pipe.execute())
        total_filtered = cards.pop()
        sizes, gone, i = [], [], 0
        for g in groups:
            sizes.append(sum(cards[i:i + len(g)]))
            gone += [w for w, c in zip(g, cards[i:i + len(g)], strict=True) if c == 0]
            i += len(g)
        if gone:  # word sets that expired: drop them from the vocabulary
            self.redis.zrem(vocab, *gone)
        smallest = min(sizes)
        if smallest == 0:
            return []
        if smallest > 20_000 and smallest * 10 >= total_filtered:
            # a word most of the filtered records have: reading them newest first finds matches at once
            return self._walk(zkey, lo, hi, match, limit)
        tmp = self._k(f"tmp:{uuid.uuid4().hex}")
        temps: list[str] = []
        pipe = self.redis.pipeline(transaction=False)
        sets = list(filters)
        for n, g in enumerate(groups):
            if len(g) == 1:
                sets.append(self._k(f"idx:w:{g[0]}"))
            else:
                temps.append(f"{tmp}:{n}")
                pipe.zunionstore(temps[-1], [self._k(f"idx:w:{w}") for w in g], aggregate="MAX")
                sets.append(temps[-1])
        target = sets[0]
        if len(sets) > 1:
            temps.append(tmp)
            pipe.zinterstore(tmp, sets, aggregate="MAX")
            target = tmp
        for t in temps:
            pipe.expire(t, 60)
        pipe.execute()
        try:
            return self._walk(target, lo, hi, match, limit, max_read=MAX_WALK, drop_stale=False)
        finally:
            if temps:
                self.redis.delete(*temps)

    # --- key/value, counters, locks ---------------------------------------------------------------
    def set(self, key: str, value: Any, ttl: float | None = None, only_if_absent: bool = False) -> bool:
        ok = self.redis.set(self._k(key), _dumps(value), px=_ms(ttl) if ttl else None, nx=only_if_absent)
        return bool(ok)

    def get(self, key: str) -> Any:
        raw = self.redis.get(self._k(key))
        return orjson.loads(raw) if raw is not None else None

    def get_many(self, keys: Sequence[str]) -> list[Any]:
        if not keys:
            return []
        ks = [self._k(k) for k in keys]
        raw = self.redis.mget_nonatomic(ks) if self._cluster else self.redis.mget(ks)  # cluster: keys span slots
        return [orjson.loads(r) if r is not None else None for r in raw]

    def delete(self, key: str) -> bool:
        return bool(self.redis.delete(self._k(key)))

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        return int(self._incr(keys=[self._k(key)], args=[int(amount), _ms(ttl) if ttl else ""]))

    def acquire_lock(self, name: str, owner: str, ttl: float) -> bool:
        return bool(self._lock(keys=[self._k(f"lock:{name}")], args=[owner, _ms(ttl)]))

    def release_lock(self, name: str, owner: str) -> bool:
        return bool(self._unlock(keys=[self._k(f"lock:{name}")], args=[owner]))

    def keys(self, prefix: str) -> list[str]:
        """Keys (without the store prefix) that start with ``prefix`` (SCAN, never KEYS)."""
        n = len(self.prefix)
        pattern = (self.prefix + prefix).replace("[", "\\[").replace("*", "\\*").replace("?", "\\?") + "*"
        return sorted({k.decode()[n:] for k in self.redis.scan_iter(match=pattern, count=1000)})

    # --- workers ------------------------------------------------------------------------------
    def heartbeat(self, worker_id: str, info: dict[str, Any], ttl: float) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self._k(f"worker:{worker_id}"), _dumps(info), px=_ms(ttl))
        pipe.zadd(self._k("workers"), {worker_id: time.time()})
        pipe.execute()

    def workers(self, within: float = 60.0) -> dict[str, Any]:
        """Workers whose heartbeat is still alive, with the info they sent."""
        self.redis.zremrangebyscore(self._k("workers"), "-inf", time.time() - max(within, 3600.0))
        ids = [w.decode() for w in cast("list[bytes]", self.redis.zrangebyscore(self._k("workers"), time.time() - within, "+inf"))]
        infos = self.get_many([f"worker:{w}" for w in ids])
        return {w: i for w, i in zip(ids, infos, strict=True) if i is not None}

    def close(self) -> None:
        """The connection pool is shared per URL in this process; nothing to release per store."""
