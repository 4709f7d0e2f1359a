"""The PostgreSQL store: results, status records, flags, counters, locks and worker heartbeats in one table.

``bk_kv (key text primary key, value text /* JSON */, expires double precision /* unix s, db clock */)``.
Every operation is one statement (``INSERT … ON CONFLICT … RETURNING``), so counters and locks are atomic
across processes and hosts. Expired rows are invisible at once and deleted in the background of writes.
``get_result`` waits with LISTEN/NOTIFY: ``put_result`` of a finished record notifies the channel
``bk_results_<schema hash>`` with the task id in the same statement, so a waiter wakes when it lands.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson
import psycopg

from boostkernel.leasing import consumer_id
from boostkernel.retrying import Backoff
from boostkernel.store import Store, StoreCapabilities

from ._db import (
    DEFAULT_SCHEMA,
    DEFAULT_URL,
    NOW,
    Link,
    channel,
    check_schema,
    check_url,
    ensure_schema,
    log,
)

DDL = """
CREATE TABLE IF NOT EXISTS {s}.bk_kv (
    key text PRIMARY KEY,
    value text NOT NULL,
    expires double precision
);
CREATE INDEX IF NOT EXISTS bk_kv_expires ON {s}.bk_kv (expires) WHERE expires IS NOT NULL;
"""

_FINISHED = ("success", "failure", "skipped", "dead", "expired", "revoked", "duplicate")

# Task-record search (the dashboard): a narrow table ``bk_records`` (one row per ``result:*`` key: publish
# time, queue, status, the lower-cased JSON of the arguments, expiry) kept by triggers on ``bk_kv``, with
# b-tree indexes and a ``pg_trgm`` GIN index of the arguments (when the extension can be created). A search
# reads no JSON but that of the records it returns. Made by the first search or ``prepare_search()``, so a
# store nobody searches pays nothing.
_RESULTS = "starts_with(key, 'result:')"
_ROW = ("COALESCE((j ->> 'published_at')::float8, (j ->> 'started_at')::float8, 0), j ->> 'queue', "
        "j ->> 'status', lower(COALESCE((j -> 'args')::text, '') || ' ' || COALESCE((j -> 'kwargs')::text, ''))")
SEARCH_DDL = """
SELECT pg_advisory_xact_lock(hashtext('boostkernel-search:' || '{n}'));
CREATE TABLE IF NOT EXISTS {s}.bk_records (
    key text PRIMARY KEY,
    at double precision NOT NULL,
    queue text,
    status text,
    args text NOT NULL,
    expires double precision
);
CREATE INDEX IF NOT EXISTS bk_records_at ON {s}.bk_records (at);
CREATE INDEX IF NOT EXISTS bk_records_queue ON {s}.bk_records (queue, at);
CREATE INDEX IF NOT EXISTS bk_records_status ON {s}.bk_records (status, at);
CREATE INDEX IF NOT EXISTS bk_records_qs ON {s}.bk_records (queue, status, at);
CREATE INDEX IF NOT EXISTS bk_records_id ON {s}.bk_records (key text_pattern_ops);
CREATE OR REPLACE FUNCTION {s}.bk_records_put() RETURNS trigger LANGUAGE plpgsql AS $f$
DECLARE j jsonb := NEW.value::jsonb;
BEGIN
  INSERT INTO {s}.bk_records (key, at, queue, status, args, expires) VALUES (NEW.key, {row}, NEW.expires)
  ON CONFLICT (key) DO UPDATE SET at = excluded.at, queue = excluded.queue, status = excluded.status,
    args = excluded.args, expires = excluded.expires;
  RETURN NULL;
END $f$;
CREATE OR REPLACE FUNCTION {s}.bk_records_del() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
  DELETE FROM {s}.bk_records WHERE key = OLD.key;
  RETURN NULL;
END $f$;
DROP TRIGGER IF EXISTS bk_records_put ON {s}.bk_kv;
CREATE TRIGGER bk_records_put AFTER INSERT OR UPDATE ON {s}.bk_kv FOR EACH ROW
  WHEN (starts_with(NEW.key, 'result:')) EXECUTE FUNCTION {s}.bk_records_put();
DROP TRIGGER IF EXISTS bk_records_del ON {s}.bk_kv;
CREATE TRIGGER bk_records_del AFTER DELETE ON {s}.bk_kv FOR EACH ROW
  WHEN (starts_with(OLD.key, 'result:')) EXECUTE FUNCTION {s}.bk_records_del();
INSERT INTO {s}.bk_records (key, at, queue, status, args, expires)
  SELECT key, {row}, expires FROM (SELECT key, value::jsonb AS j, expires FROM {s}.bk_kv WHERE {results}) k
  ON CONFLICT (key) DO NOTHING;
DROP INDEX IF EXISTS {s}.bk_kv_results_at, {s}.bk_kv_results_queue, {s}.bk_kv_results_status,
  {s}.bk_kv_results_qs, {s}.bk_kv_results_key, {s}.bk_kv_results_args;
"""
#: A text search first reads this many newest records of its filters (enough when the text is common), then
#: asks the trigram index.
_TEXT_PROBE = 20000
#: Whether a text is common is judged on the arguments of this many newest records.
_TEXT_SAMPLE = 2000


def _like(text: str, prefix: bool = False) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%" if prefix else f"%{escaped}%"


def _dumps(v: Any) -> str:
    return orjson.dumps(v, default=repr).decode()


class PostgresStore(Store):
    name = "postgres"
    capabilities = StoreCapabilities(cross_process=True, cross_host=True, durable=True, push_wait=True)
    default_url = DEFAULT_URL

    def __init__(self, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(check_url(url), params, **options)
        opts = dict(params.broker_options) if params is not None and url and url == params.broker_url else {}
        opts.update(options)
        self.schema = check_schema(opts.get("schema", DEFAULT_SCHEMA))
        self.t = f'"{self.schema}".bk_kv'
        self.channel = channel(self.schema, "\x00results")
        assert self.url is not None
        app = f"boostkernel-store:{consumer_id()}"
        self._link = Link(self.url, opts, app)
        self._listener = Link(self.url, opts, app, self._listen)
        self._waiters: dict[str, list[threading.Event]] = {}
        self._waiters_lock = threading.Lock()
        self._listen_thread: threading.Thread | None = None
        self._listening = threading.Event()
        self._closed = threading.Event()
        self._timeout = float(opts.get("publish_timeout", 30.0))
        ensure_schema(self._link, self.schema, "store", DDL)
        self._writes = 0
        t = self.t
        self.q_set = (f"INSERT INTO {t} (key, value, expires) VALUES (%s, %s, {NOW} + %s) ON CONFLICT (key) DO UPDATE "
                      f"SET value = excluded.value, expires = excluded.expires")
        self.q_set_nx = (f"INSERT INTO {t} (key, value, expires) VALUES (%s, %s, {NOW} + %s) ON CONFLICT (key) DO UPDATE "
                         f"SET value = excluded.value, expires = excluded.expires "
                         f"WHERE {t}.expires IS NOT NULL AND {t}.expires <= {NOW} RETURNING 1")
        self.q_get = f"SELECT value FROM {t} WHERE key = %s AND (expires IS NULL OR expires > {NOW})"

    def _listen(self, conn: Any) -> None:
        conn.execute(f'LISTEN "{self.channel}"')

    def _run(self, fn: Any) -> Any:
        return self._link.run_retrying(fn, self._timeout, "PostgreSQL store")

    # --- results ------------------------------------------------------------------------------------
    def put_result(self, task_id: str, record: dict[str, Any], ttl: float) -> None:
        key, data = f"result:{task_id}", _dumps(record)
        if record.get("status") in _FINISHED:
            sql = f"WITH s AS ({self.q_set}) SELECT pg_notify(%s, %s)"
            self._run(lambda c: c.execute(sql, (key, data, ttl, self.channel, task_id)))
        else:
            self._run(lambda c: c.execute(self.q_set, (key, data, ttl)))
        self._maybe_expire()

    def get_result(self, task_id: str, timeout: float = 0.0) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        key = f"result:{task_id}"
        rec = self.get(key)
        if (rec is not None and rec.get("status") != "running") or timeout <= 0:
            return rec  # type: ignore[no-any-return]
        ev = threading.Event()
        with self._waiters_lock:
            self._waiters.setdefault(task_id, []).append(ev)
        try:
            self._ensure_listener()
            self._listening.wait(max(0.0, min(1.0, deadline - time.monotonic())))
            while True:
                rec = self.get(key)
                left = deadline - time.monotonic()
                if (rec is not None and rec.get("status") != "running") or left <= 0:
                    return rec  # type: ignore[no-any-return]
                ev.wait(min(left, 1.0))  # woken by the notification; re-checked every second regardless
                ev.clear()
        finally:
            with self._waiters_lock:
                evs = self._waiters.get(task_id, [])
                if ev in evs:
                    evs.remove(ev)
                if not evs:
                    self._waiters.pop(task_id, None)

    def _ensure_listener(self) -> None:
        with self._waiters_lock:
            if self._listen_thread is None or not self._listen_thread.is_alive():
                self._listen_thread = threading.Thread(target=self._listen_loop, daemon=True,
                                                       name="boostkernel-postgres-results")
                self._listen_thread.start()

    def _listen_loop(self) -> None:
        """One thread per store LISTENs for finished results and wakes the threads waiting for them."""

        def dispatch(c: psycopg.Connection[Any]) -> None:
            self._listening.set()
            for n in c.notifies(timeout=0.5):
                with self._waiters_lock:
                    evs = list(self._waiters.get(n.payload, ()))
                for ev in evs:
                    ev.set()

        nxt = Backoff(base=0.1, cap=5.0, jitter=(0.8, 1.2))
        while not self._closed.is_set():
            try:
                self._listener.run(dispatch)
                nxt.reset()
            except Exception as exc:  # noqa: BLE001 - the listener thread must not die
                self._listening.clear()
                with self._waiters_lock:  # waiters re-check by reading while we reconnect
                    for evs in self._waiters.values():
                        for ev in evs:
                            ev.set()
                if self._closed.is_set():
                    return
                delay = nxt()
                log.warning("PostgreSQL result listener failed (%s); reconnecting in %.2fs", exc, delay)
                self._closed.wait(delay)

    # --- key/value, counters, locks ---------------------------------------------------------------
    def set(self, key: str, value: Any, ttl: float | None = None, only_if_absent: bool = False) -> bool:
        data = _dumps(value)
        if only_if_absent:
            row = self._run(lambda c: c.execute(self.q_set_nx, (key, data, ttl)).fetchone())
            return row is not None
        self._run(lambda c: c.execute(self.q_set, (key, data, ttl)))
        return True

    def get(self, key: str) -> Any:
        row = self._run(lambda c: c.execute(self.q_get, (key,)).fetchone())
        return orjson.loads(row[0]) if row else None

    def delete(self, key: str) -> bool:
        n = self._run(lambda c: c.execute(
            f"DELETE FROM {self.t} WHERE key = %s AND (expires IS NULL OR expires > {NOW})", (key,)).rowcount)
        return bool(n)

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        t = self.t
        sql = (f"INSERT INTO {t} (key, value, expires) VALUES (%s, %s::bigint::text, {NOW} + %s) ON CONFLICT (key) "
               f"DO UPDATE SET value = CASE WHEN {t}.expires IS NOT NULL AND {t}.expires <= {NOW} THEN excluded.value "
               f"ELSE ({t}.value::bigint + %s)::text END, "
               f"expires = CASE WHEN {t}.expires IS NOT NULL AND {t}.expires <= {NOW} THEN excluded.expires "
               f"ELSE {t}.expires END RETURNING value")
        row = self._run(lambda c: c.execute(sql, (key, amount, ttl, amount)).fetchone())
        return int(row[0])

    def acquire_lock(self, name: str, owner: str, ttl: float) -> bool:
        t = self.t
        sql = (f"INSERT INTO {t} (key, value, expires) VALUES (%s, %s, {NOW} + %s) ON CONFLICT (key) DO UPDATE "
               f"SET value = excluded.value, expires = excluded.expires "
               f"WHERE {t}.value = excluded.value OR ({t}.expires IS NOT NULL AND {t}.expires <= {NOW}) RETURNING 1")
        return self._run(lambda c: c.execute(sql, (f"lock:{name}", _dumps(owner), ttl)).fetchone()) is not None

    def release_lock(self, name: str, owner: str) -> bool:
        n = self._run(lambda c: c.execute(
            f"DELETE FROM {self.t} WHERE key = %s AND value = %s AND (expires IS NULL OR expires > {NOW})",
            (f"lock:{name}", _dumps(owner))).rowcount)
        return bool(n)

    def keys(self, prefix: str) -> list[str]:
        like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self._run(lambda c: c.execute(
            f"SELECT key FROM {self.t} WHERE key LIKE %s AND (expires IS NULL OR expires > {NOW}) ORDER BY key",
            (like,)).fetchall())
        return [r[0] for r in rows]

    def prepare_search(self) -> None:
        """Create the search table, its triggers and indexes, and fill it from the records already there (once;
        about a minute per million records). From then on every write of a record also writes its row."""
        if getattr(self, "_search_ready", False):
            return
        s, n = f'"{self.schema}"', self.schema
        exists = self._run(lambda c: c.execute(
            "SELECT 1 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace ns ON "
            "ns.oid = c.relnamespace WHERE ns.nspname = %s AND c.relname = 'bk_kv' AND t.tgname = 'bk_records_put'",
            (n,)).fetchone()) is not None
        if not exists:
            ddl = SEARCH_DDL.format(s=s, n=n, row=_ROW, results=_RESULTS)

            def create(c: Any) -> None:
                with c.transaction():
                    c.execute(ddl)

            self._run(create)
        try:
            self._run(lambda c: c.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
            self._run(lambda c: c.execute(
                f"CREATE INDEX IF NOT EXISTS bk_records_args ON {s}.bk_records USING gin (args gin_trgm_ops)"))
            self._trigram = True
        except psycopg.Error as exc:  # no pg_trgm (or no right to create it): text search scans
            log.info("schema %s: no trigram index for task-record text search (%s)", n, exc)
            self._trigram = False
        if not exists:
            self._run(lambda c: c.execute(f"ANALYZE {s}.bk_records"))
        self._search_ready = True

    def search_results(self, queue: str | None = None, status: str | None = None, since: float | None = None,
                       until: float | None = None, task_id: str | None = None, text: str | None = None,
                       limit: int = 100) -> list[dict[str, Any]]:
        """Task records (``result:*``) matching every given filter, newest published first: ``task_id`` is an
        id or its prefix, ``text`` is found (case-insensitively) in the JSON of the arguments."""
        self.prepare_search()
        r = f'"{self.schema}".bk_records'
        where = [f"(expires IS NULL OR expires > {NOW})"]
        args: list[Any] = []
        if task_id and len(task_id) >= 36:
            where.append("key = %s")
            args.append(f"result:{task_id}")
        elif task_id:
            where.append("key LIKE %s")
            args.append("result:" + _like(task_id, prefix=True))
        for col, value in (("queue", queue), ("status", status)):
            if value:
                where.append(f"{col} = %s")
                args.append(value)
        if since is not None:
            where.append("at >= %s")
            args.append(float(since))
        if until is not None:
            where.append("at <= %s")
            args.append(float(until))
        lim = int(limit)
        cond = " AND ".join(where)
        if not text:
            keys = f"SELECT key, at FROM {r} WHERE {cond} ORDER BY at DESC LIMIT %s"
            return self._values(keys, [*args, lim])
        low = text.lower()
        like = _like(low)
        # Is the text common? Judged on the arguments of the newest records (a sample read in time order).
        sample = [row[0] for row in self._run(lambda c: c.execute(
            f"SELECT args FROM {r} ORDER BY at DESC LIMIT {_TEXT_SAMPLE}").fetchall())]
        hits = sum(low in a for a in sample)
        if hits * _TEXT_PROBE >= lim * max(1, len(sample)):
            # Common text: the newest records of the filters hold enough matches (read through the time index).
            probe = (f"SELECT key, at FROM (SELECT key, at, args FROM {r} WHERE {cond} ORDER BY at DESC "
                     f"LIMIT {_TEXT_PROBE}) s WHERE args LIKE %s ORDER BY at DESC LIMIT %s")
            found = self._values(probe, [*args, like, lim])
            if len(found) >= lim:
                return found
        # Rarer text: the trigram index finds the candidates first (a materialised set, so the planner does not
        # walk a time index instead), then the filters apply.
        keys = (f"WITH m AS MATERIALIZED (SELECT key, at, queue, status, expires FROM {r} WHERE args LIKE %s) "
                f"SELECT key, at FROM m WHERE {cond} ORDER BY at DESC LIMIT %s")
        return self._values(keys, [like, *args, lim])

    def _values(self, keys_sql: str, args: list[Any]) -> list[dict[str, Any]]:
        sql = (f"SELECT k.value FROM ({keys_sql}) r JOIN {self.t} k ON k.key = r.key "
               f"WHERE k.expires IS NULL OR k.expires > {NOW} ORDER BY r.at DESC")
        return [orjson.loads(row[0]) for row in self._run(lambda c: c.execute(sql, args).fetchall())]

    def expire(self) -> int:
        """Delete expired rows; return how many."""
        return int(self._run(lambda c: c.execute(
            f"DELETE FROM {self.t} WHERE expires IS NOT NULL AND expires <= {NOW}").rowcount))

    def _maybe_expire(self) -> None:
        self._writes += 1
        if self._writes % 1000 == 0:
            try:
                self.expire()
            except psycopg.Error:  # pragma: no cover - best effort housekeeping
                pass

    def close(self) -> None:
        self._closed.set()
        if self._listen_thread is not None:
            self._listen_thread.join(2)
        self._link.close()
        self._listener.close()
