"""The SQLite store: results and coordination state shared by every process on one host."""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

import orjson

from boostkernel.store import Store, StoreCapabilities

from .db import Database, path_from_url

SCHEMA = """
CREATE TABLE IF NOT EXISTS bk_kv (
    key TEXT PRIMARY KEY,
    value BLOB,
    expires REAL
);
CREATE INDEX IF NOT EXISTS bk_kv_expires ON bk_kv (expires) WHERE expires IS NOT NULL;
"""
_local_results: dict[str, threading.Condition] = {}


def _dumps(v: Any) -> bytes:
    return orjson.dumps(v, default=repr)


def _loads(v: Any) -> Any:
    return orjson.loads(v) if isinstance(v, (bytes, str)) else v


class SqliteStore(Store):
    name = "sqlite"
    capabilities = StoreCapabilities(cross_process=True, cross_host=False, durable=True, push_wait=False)

    def __init__(self, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(url, params, **options)
        self.path = path_from_url(url, params, "store.db")
        self.db = Database(self.path, SCHEMA)
        # Waiters in this process are woken at once; other processes' results are found by polling.
        self._cond = _local_results.setdefault(str(self.path), threading.Condition())
        self._writes = 0

    def put_result(self, task_id: str, record: dict[str, Any], ttl: float) -> None:
        self.set(f"result:{task_id}", record, ttl)
        with self._cond:
            self._cond.notify_all()
        self._writes += 1
        if self._writes % 1000 == 0:
            self.expire()

    def get_result(self, task_id: str, timeout: float = 0.0) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        pause = 0.005
        while True:
            rec = self.get(f"result:{task_id}")
            if rec is not None and rec.get("status") != "running":
                return rec  # type: ignore[no-any-return]
            left = deadline - time.monotonic()
            if left <= 0:
                return rec  # type: ignore[no-any-return]
            with self._cond:
                self._cond.wait(min(pause, left))
            pause = min(pause * 1.5, 0.1)

    def set(self, key: str, value: Any, ttl: float | None = None, only_if_absent: bool = False) -> bool:
        now = time.time()
        expires = now + ttl if ttl else None
        data = _dumps(value)
        if not only_if_absent:
            with self.db.lock:
                self.db.conn.execute("INSERT OR REPLACE INTO bk_kv (key, value, expires) VALUES (?,?,?)",
                                     (key, data, expires))
            return True

        def tx(c: sqlite3.Connection) -> bool:
            cur = c.execute(
                "INSERT INTO bk_kv (key, value, expires) VALUES (?,?,?) ON CONFLICT(key) DO UPDATE SET "
                "value=excluded.value, expires=excluded.expires WHERE bk_kv.expires IS NOT NULL AND bk_kv.expires<=?",
                (key, data, expires, now))
            return cur.rowcount > 0

        return self.db.write(tx)

    def get(self, key: str) -> Any:
        rows = self.db.read("SELECT value FROM bk_kv WHERE key=? AND (expires IS NULL OR expires>?)",
                            (key, time.time()))
        return _loads(rows[0][0]) if rows else None

    def delete(self, key: str) -> bool:
        return self.db.write(lambda c: c.execute("DELETE FROM bk_kv WHERE key=?", (key,)).rowcount > 0)

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        now = time.time()
        expires = now + ttl if ttl else None

        def tx(c: sqlite3.Connection) -> int:
            row = c.execute(
                "INSERT INTO bk_kv (key, value, expires) VALUES (?,?,?) ON CONFLICT(key) DO UPDATE SET "
                "value = CASE WHEN bk_kv.expires IS NOT NULL AND bk_kv.expires<=? THEN excluded.value "
                "ELSE CAST(bk_kv.value AS INTEGER) + ? END, "
                "expires = CASE WHEN bk_kv.expires IS NOT NULL AND bk_kv.expires<=? THEN excluded.expires "
                "ELSE bk_kv.expires END RETURNING value",
                (key, amount, expires, now, amount, now)).fetchone()
            return int(row[0])

        return self.db.write(tx)

    def keys(self, prefix: str) -> list[str]:
        rows = self.db.read("SELECT key FROM bk_kv WHERE key >= ? AND key < ? AND (expires IS NULL OR expires>?)",
                            (prefix, prefix + "\uffff", time.time()))
        return [r[0] for r in rows]

    def expire(self) -> int:
        """Delete expired keys."""
        return self.db.write(lambda c: c.execute(
            "DELETE FROM bk_kv WHERE expires IS NOT NULL AND expires<=?", (time.time(),)).rowcount)

    def close(self) -> None:
        self.db.close()
