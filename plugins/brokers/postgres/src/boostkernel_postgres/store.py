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
