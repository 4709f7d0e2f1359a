"""Connections to SQLite files, set up for many threads and processes on one host."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from boostkernel.params import BoostParams, default_data_dir

T = TypeVar("T")

if sqlite3.sqlite_version_info < (3, 35):  # pragma: no cover - RETURNING is required for the atomic claim
    raise ImportError(f"boostkernel-sqlite needs SQLite >= 3.35 (this Python has {sqlite3.sqlite_version})")


def path_from_url(url: str | None, params: BoostParams | None, default_name: str) -> Path:
    """``sqlite:////abs/file.db`` or ``sqlite:///relative.db``; default: a file in the data directory."""
    if url:
        if not url.startswith("sqlite://"):
            raise ValueError(f"not a sqlite URL: {url!r} (expected sqlite:///path/to/file.db)")
        raw = url[len("sqlite://"):]
        raw = raw[1:] if raw.startswith("/") and not raw.startswith("//") else raw[1:]
        p = Path(raw)
    else:
        base = params.resolved_data_dir() if params else default_data_dir()
        p = base / default_name
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


class Database:
    """One connection guarded by a lock; writes in ``BEGIN IMMEDIATE`` with retries on lock contention."""

    def __init__(self, path: Path, schema: str) -> None:
        self.path = path
        self.lock = threading.RLock()
        self._closed = False
        self.conn = self._connect()
        with self.lock:  # executescript manages its own transaction
            for attempt in range(50):
                try:
                    self.conn.executescript(schema)
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or attempt == 49:
                        raise
                    time.sleep(0.05)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # survives kill -9 of any process in WAL mode
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def _reconnect_if_lost(self, exc: sqlite3.ProgrammingError) -> None:
        """The connection was closed under us (not by :meth:`close`): open a new one, else re-raise."""
        if self._closed or "closed" not in str(exc):
            raise exc
        self.conn = self._connect()

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one write transaction (retried if another process holds the lock too long)."""
        with self.lock:
            delay = 0.01
            while True:
                try:
                    self.conn.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.ProgrammingError as exc:
                    self._reconnect_if_lost(exc)
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) and "busy" not in str(exc):
                        raise
                    time.sleep(delay)
                    delay = min(delay * 2, 0.5)
            try:
                result = fn(self.conn)
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
            return result

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> None:
        """One statement in autocommit mode (a single-row write needs no explicit transaction)."""
        with self.lock:
            try:
                self.conn.execute(sql, args)
            except sqlite3.ProgrammingError as exc:
                self._reconnect_if_lost(exc)
                self.conn.execute(sql, args)

    def read(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self.lock:
            try:
                return self.conn.execute(sql, args).fetchall()
            except sqlite3.ProgrammingError as exc:
                self._reconnect_if_lost(exc)
                return self.conn.execute(sql, args).fetchall()

    def close(self) -> None:
        with self.lock:
            self._closed = True
            try:
                self.conn.close()
            except sqlite3.Error:
                pass
