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

# Task-record search (the dashboard): expression indexes over the JSON of ``result:*`` rows and a trigram
# full-text table of their arguments (kept by triggers), created by the first search (or
# ``prepare_search()``), so a store nobody searches pays nothing for them.
_RESULTS = "key >= 'result:' AND key < 'result;'"


def _field(name: str, row: str = "") -> str:
    return f"json_extract(CAST({row}value AS TEXT), '$.{name}')"


_AT, _QUEUE, _STATUS = _field("published_at"), _field("queue"), _field("status")
SEARCH_INDEXES = f"""
CREATE INDEX IF NOT EXISTS bk_kv_results_at ON bk_kv ({_AT}) WHERE {_RESULTS};
CREATE INDEX IF NOT EXISTS bk_kv_results_queue ON bk_kv ({_QUEUE}, {_AT}) WHERE {_RESULTS};
CREATE INDEX IF NOT EXISTS bk_kv_results_status ON bk_kv ({_STATUS}, {_AT}) WHERE {_RESULTS};
"""


def _args_text(row: str) -> str:
    return f"{_field('args', row)} || ' ' || {_field('kwargs', row)}"


_IS_RESULT = "{r}.key >= 'result:' AND {r}.key < 'result;'"
#: Records of tasks still running are not put in the full-text table (a task's "running" record is replaced by
#: its final one a moment later: indexing both doubled the cost); a text search reads the running ones apart.
_NOT_RUNNING = f"{_field('status', 'new.')} IS NOT 'running'"
#: The full-text table shares bk_kv's rowids; an INSERT OR REPLACE deletes the old row without firing delete
#: triggers, so the BEFORE INSERT trigger drops the old row's text first.
SEARCH_TEXT = f"""
BEGIN IMMEDIATE;
CREATE VIRTUAL TABLE bk_results_text USING fts5(args, tokenize='trigram');
CREATE TRIGGER bk_results_text_bi BEFORE INSERT ON bk_kv WHEN {_IS_RESULT.format(r="new")} BEGIN
  DELETE FROM bk_results_text WHERE rowid = (SELECT rowid FROM bk_kv WHERE key = new.key);
END;
CREATE TRIGGER bk_results_text_ai AFTER INSERT ON bk_kv WHEN {_IS_RESULT.format(r="new")} AND {_NOT_RUNNING} BEGIN
  INSERT INTO bk_results_text (rowid, args) VALUES (new.rowid, {_args_text("new.")});
END;
CREATE TRIGGER bk_results_text_au AFTER UPDATE ON bk_kv WHEN {_IS_RESULT.format(r="new")} BEGIN
  DELETE FROM bk_results_text WHERE rowid = old.rowid;
  INSERT INTO bk_results_text (rowid, args) SELECT new.rowid, {_args_text("new.")} WHERE {_NOT_RUNNING};
END;
CREATE TRIGGER bk_results_text_ad AFTER DELETE ON bk_kv WHEN {_IS_RESULT.format(r="old")} BEGIN
  DELETE FROM bk_results_text WHERE rowid = old.rowid;
END;
INSERT INTO bk_results_text (rowid, args) SELECT rowid, {_args_text("")} FROM bk_kv WHERE {_RESULTS};
COMMIT;
"""
#: A text search first looks among this many newest records (enough when the text is common).
_TEXT_PROBE = 20000
#: A full-text query uses the this many rarest trigrams of the text, judged on the arguments of this many newest
#: records.
_FTS_TERMS, _TEXT_SAMPLE = 3, 2000


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

    def prepare_search(self) -> None:
        """Create what task-record search uses, once: the indexes (seconds per million records) and the trigram
        table of the arguments (about a minute per million; needs SQLite >= 3.34 with FTS5, else text
        search scans). Afterwards every writer of this file keeps them (a few tens of microseconds per record)."""
        if getattr(self, "_search_ready", False):
            return
        with self.db.lock:
            self.db.conn.executescript(SEARCH_INDEXES)
            exists = self.db.conn.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'bk_results_text'").fetchone() is not None
            if not exists:
                try:
                    self.db.conn.executescript(SEARCH_TEXT)
                    exists = True
                except sqlite3.OperationalError as exc:  # no FTS5/trigram, or another process made it now
                    if self.db.conn.in_transaction:
                        self.db.conn.execute("ROLLBACK")
                    exists = self.db.conn.execute(
                        "SELECT 1 FROM sqlite_master WHERE name = 'bk_results_text'").fetchone() is not None
                    if not exists:
                        import logging

                        logging.getLogger("boostkernel.sqlite").info("no full-text index for task records: %s", exc)
        self._text_index = exists
        self._search_ready = True

    def search_results(self, queue: str | None = None, status: str | None = None, since: float | None = None,
                       until: float | None = None, task_id: str | None = None, text: str | None = None,
                       limit: int = 100) -> list[dict[str, Any]]:
        """Task records (``result:*``) matching every given filter, newest published first: ``task_id`` is an
        id or its prefix, ``text`` is found (ASCII case-insensitively) in the JSON of the arguments."""
        self.prepare_search()
        where = [_RESULTS, "(expires IS NULL OR expires > ?)"]
        args: list[Any] = [time.time()]
        index = "bk_kv_results_queue" if queue else "bk_kv_results_status" if status else "bk_kv_results_at"
        if task_id:
            index = "sqlite_autoindex_bk_kv_1"  # the primary key's index, on the id's own range only
            where = ["(expires IS NULL OR expires > ?)"]
            if len(task_id) >= 36:
                where.append("key = ?")
                args.append(f"result:{task_id}")
            else:
                where.append("key >= ? AND key < ?")
                args += [f"result:{task_id}", f"result:{task_id}\uffff"]
        for expr, value in ((_QUEUE, queue), (_STATUS, status)):
            if value:
                where.append(f"{expr} = ?")
                args.append(value)
        if since is not None:
            where.append(f"{_AT} >= ?")
            args.append(since)
        if until is not None:
            where.append(f"{_AT} <= ?")
            args.append(until)
        lim = int(limit)
        if not text:
            hint = f" INDEXED BY {index}" if index else ""
            sql = f"SELECT value FROM bk_kv{hint} WHERE {' AND '.join(where)} ORDER BY {_AT} DESC LIMIT ?"
            return [_loads(r[0]) for r in self.db.read(sql, (*args, lim))]
        like = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        # a plain LIKE over the row first (cheap), then only within the arguments
        text_where = (f"CAST(value AS TEXT) LIKE ? ESCAPE '\\' AND ({_args_text('')}) LIKE ? ESCAPE '\\'")
        fts = self._text_index and len(text) >= 3 and not task_id
        match, rare = self._fts_query(text, lim) if fts else ("", False)
        hint = f" INDEXED BY {index}" if index else ""
        rows: list[Any] = []
        if not rare:
            # Common text: the newest few thousand records (time index) hold enough matches.
            probe = (f"SELECT value FROM (SELECT value, {_AT} AS at FROM bk_kv{hint} WHERE {' AND '.join(where)} "
                     f"ORDER BY {_AT} DESC LIMIT {_TEXT_PROBE}) WHERE {text_where} ORDER BY at DESC LIMIT ?")
            rows = self.db.read(probe, (*args, like, like, lim))
        if len(rows) < lim:
            # Rare text: the trigram table finds the rows (else every record is read).
            if fts:
                where.append("rowid IN (SELECT rowid FROM bk_results_text WHERE bk_results_text MATCH ?)")
                args.append(match)
                hint = ""
            sql = (f"SELECT value FROM bk_kv{hint} WHERE {' AND '.join(where)} AND {text_where} "
                   f"ORDER BY {_AT} DESC LIMIT ?")
            rows = self.db.read(sql, (*args, like, like, lim))
            if fts and status in (None, "running"):
                # tasks running now are not in the trigram table: the status index finds them
                where[-1] = f"{_STATUS} = 'running'"
                running = self.db.read(
                    f"SELECT value FROM bk_kv INDEXED BY bk_kv_results_status WHERE {' AND '.join(where)} AND "
                    f"{text_where} ORDER BY {_AT} DESC LIMIT ?", (*args[:-1], like, like, lim))
                if running:
                    recs = sorted((_loads(r[0]) for r in (*rows, *running)),
                                  key=lambda r: float(r.get("published_at") or 0.0), reverse=True)
                    return list({str(r.get("task_id")): r for r in recs}.values())[:lim]
        return [_loads(r[0]) for r in rows]

    def _fts_query(self, text: str, limit: int) -> tuple[str, bool]:
        """The full-text query for ``text`` and whether the text looks rare (the newest ``_TEXT_PROBE`` records
        would not hold ``limit`` matches, judging by a sample). The query is the text's rarest few
        trigrams (by their frequency in the arguments of the newest records), each a term: the LIKE that follows
        checks the text itself, and the phrase of all its trigrams would read the long position lists of
        trigrams nearly every record has ("wor" of "word…")."""
        low = text.lower()
        grams = [g for g in dict.fromkeys(low[i:i + 3] for i in range(len(low) - 2)) if g.isascii()]
        if not grams:
            return '"' + text.replace('"', '""') + '"', False
        sample = [str(r[0]).lower() for r in self.db.read(
            f"SELECT {_args_text('')} FROM bk_kv INDEXED BY bk_kv_results_at WHERE {_RESULTS} "
            f"ORDER BY {_AT} DESC LIMIT {_TEXT_SAMPLE}", ())]
        freq = {g: sum(g in a for a in sample) for g in grams}
        picked = sorted(grams, key=lambda g: (freq[g], grams.index(g)))[:_FTS_TERMS]
        hits = sum(all(g in a for g in picked) for a in sample)
        rare = hits * _TEXT_PROBE < limit * max(1, len(sample))
        return " AND ".join('"' + g.replace('"', '""') + '"' for g in picked), rare

    def expire(self) -> int:
        """Delete expired keys."""
        return self.db.write(lambda c: c.execute(
            "DELETE FROM bk_kv WHERE expires IS NOT NULL AND expires<=?", (time.time(),)).rowcount)

    def close(self) -> None:
        self.db.close()
