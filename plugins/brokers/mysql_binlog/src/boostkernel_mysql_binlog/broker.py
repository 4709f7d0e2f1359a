"""Change capture from the MySQL/MariaDB binary log: row changes of chosen tables become messages.

This broker is a **source**, not a queue. A consumer reads the server's row-based binary log (through
``mysql-replication``) from a checkpoint, turns every inserted, updated or deleted row of the tables it
watches into one message, and moves the checkpoint forward only over messages whose task finished:

* **One reader per queue.** The consumer that holds the server lock ``GET_LOCK('bk_binlog:<queue>')``
  reads; other consumers of the queue wait as standbys and try the lock every ``lock_retry`` seconds. The
  lock is tied to the holder's connection, so a consumer that is SIGKILLed loses it as soon as its
  socket closes, and a standby takes over from the checkpoint (the connection is the heartbeat).
* **Keys and the checkpoint.** Each row gets the key ``<binlog file>:<position of its transaction>:<row
  index in that transaction>``; keys grow along the log. The checkpoint (table ``bk_binlog_checkpoint``)
  is the first key whose task has not finished; it is written every ``flush_interval`` (0.2 s) after the
  acks. A restart reads the log again from the start of that key's transaction and skips the rows before
  it: nothing is lost, and at most what was in flight or acked in the last ``flush_interval`` runs twice.
* **Redelivery is counted.** Before a fetch returns, the highest key handed out is recorded
  (``hwm``); a row at or below the previous holder's ``hwm`` is delivered with ``delivery_count`` 2 or more.
* **Crash loops.** The kernel's ``started()`` goes to the running journal (``boostkernel.journal``). A new
  holder reads the journal of the previous one: rows that were *running* when it died are charged a crash
  (table ``bk_binlog_crashes``); a row charged ``max_deliveries`` times is written to ``bk_binlog_dead``
  with a ``crash-loop`` reason instead of being delivered. Without a readable journal (the previous
  holder ran on another host) every row it had fetched is charged.
* **push** inserts a row into ``<schema>.bk_binlog_messages``; the broker watches that table too, so a
  pushed message reaches the consumer through the binary log like any row change. ``nack`` requeues in
  the consumer's memory (the checkpoint cannot pass an unsettled row, so a crash loses nothing); a message
  with an ``eta`` is held the same way until it is due.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import decimal
import hashlib
import heapq
import json
import queue as queue_mod
import random
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from boostkernel.broker import Broker, BrokerCapabilities, DeadLetterRecord, Delivery, Outgoing
from boostkernel.errors import BrokerUnavailable, ConfigError
from boostkernel.journal import RunningJournal, consumer_id, host_journal_dir, read_journal, remove_journal
from boostkernel.logs import mask_url

Key = tuple[str, int, int]
_NO_KEY: Key = ("", 0, 0)
MESSAGES = "bk_binlog_messages"
_EVENTS = ("insert", "update", "delete")


def key_str(k: Key) -> str:
    return f"{k[0]}:{k[1]:015d}:{k[2]:07d}"


def parse_key(s: str) -> Key:
    if not s:
        return _NO_KEY
    f, p, i = s.rsplit(":", 2)
    return (f, int(p), int(i))


def _json_default(v: Any) -> Any:
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, (decimal.Decimal, datetime.timedelta)):
        return str(v)
    if isinstance(v, (bytes, bytearray)):
        try:
            return bytes(v).decode()
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(bytes(v)).decode()
    if isinstance(v, set):
        return sorted(v)
    return str(v)


def _pymysql_connect(**settings: Any) -> Any:
    """pymysql.connect for the replication library, which still passes the deprecated ``db``/``passwd``."""
    import pymysql  # type: ignore[import-untyped]

    if "db" in settings:
        settings["database"] = settings.pop("db")
    if "passwd" in settings:
        settings["password"] = settings.pop("passwd")
    return pymysql.connect(**settings)


def connection_settings(url: str) -> dict[str, Any]:
    u = urlsplit(url)
    if u.scheme not in ("mysql", "mysql-binlog", "mariadb"):
        raise ConfigError(f"not a MySQL URL: {mask_url(url)} (expected mysql-binlog://user:password@host:3306/db)")
    return {"host": u.hostname or "127.0.0.1", "port": u.port or 3306, "user": unquote(u.username or "root"),
            "password": unquote(u.password or ""), "database": u.path.lstrip("/") or None}


class MysqlBinlogBroker(Broker):
    """Row changes of ``tables`` (and pushed messages) as at-least-once deliveries, one reader per queue."""

    name = "mysql-binlog"
    default_url = "mysql-binlog://root@127.0.0.1:3306/"
    # and the defaults: ack, requeue, dead letters, cross-process, recovery within 15 s
    capabilities = BrokerCapabilities(delay=True, durable=True, batch_publish=True, count=False, purge=False)

    def __init__(self, queue: str, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(queue, url, params, **options)
        if len(queue) > 191:
            raise ConfigError(f"mysql-binlog: queue name too long ({len(queue)} > 191 characters)")
        o = self.options
        self.settings = connection_settings(self.url or self.default_url or "")
        self.schema = str(o.get("schema", "boostkernel"))
        default_db = self.settings.pop("database")
        tables = o.get("tables", [])
        if isinstance(tables, str):
            tables = [t for t in tables.replace(",", " ").split() if t]
        self.tables: set[tuple[str, str]] = set()
        for t in tables:
            db, dot, name = str(t).rpartition(".")
            if not dot:
                db = default_db or ""
            if not db or not name:
                raise ConfigError(f"mysql-binlog: table {t!r} needs its database: tables=['shop.orders'] "
                                  f"(or a database in the URL: mysql-binlog://root@host:3306/shop)")
            self.tables.add((db, name))
        events = o.get("events", _EVENTS)
        self.events = {events} if isinstance(events, str) else set(events)
        if not self.events <= set(_EVENTS):
            raise ConfigError(f"mysql-binlog: events must be among {_EVENTS}, not {sorted(self.events)}")
        self.start_at = str(o.get("start", "now"))
        if self.start_at not in ("now", "beginning"):
            raise ConfigError("mysql-binlog: start must be 'now' (changes from the first use of the queue on) "
                              "or 'beginning' (the oldest binary log the server still has)")
        self.flush_interval = float(o.get("flush_interval", 0.2))
        self.lock_retry = float(o.get("lock_retry", 0.5))
        self.buffer = int(o.get("buffer", 2000))
        self.lock_name = "bk_binlog:" + hashlib.sha1(queue.encode()).hexdigest()[:40]
        self.owner = consumer_id()
        self.journal_dir = host_journal_dir(f"mysql-binlog-{queue}")
        self.journal = RunningJournal(self.journal_dir, self.owner)
        self._pub_lock, self._ctl_lock = threading.RLock(), threading.RLock()
        self._pub: Any = None
        self._ctl: Any = None
        # reading state (guarded by _state)
        self._state = threading.Lock()
        self._epoch = 0
        self._holder = False
        self._lost = False
        self._next_lock_try = 0.0
        self._buf: queue_mod.Queue[tuple[int, Key, str, bytes, float, int]] = queue_mod.Queue(self.buffer)
        self._pending: OrderedDict[Key, bool] = OrderedDict()  # read and not yet settled -> settled?
        self._pending_seq: dict[Key, int] = {}
        self._tail: Key = _NO_KEY
        self._ck_written: Key = _NO_KEY
        self._ck_written_at = time.monotonic()
        self._settled = False
        self._prev_hwm: Key = _NO_KEY
        self._hwm: Key = _NO_KEY
        self._charge_upto: Key = _NO_KEY
        self._prev_owner = ""
        self._crashes: dict[str, int] = {}
        self._redo: list[tuple[float, int, Delivery]] = []  # (due, n, delivery): nacked or not yet due
        self._redo_n = 0
        self._reader: threading.Thread | None = None
        self._stream: Any = None
        self._flusher: threading.Thread | None = None
        self._closed = threading.Event()
        self._setup()

    # --- connections -------------------------------------------------------------------------------
    def _connect(self) -> Any:
        import pymysql

        s = self.settings
        try:
            return pymysql.connect(host=s["host"], port=s["port"], user=s["user"], password=s["password"],
                                   autocommit=True, connect_timeout=5, read_timeout=30, write_timeout=30,
                                   client_flag=pymysql.constants.CLIENT.FOUND_ROWS, charset="utf8mb4")
        except pymysql.err.OperationalError as exc:
            raise BrokerUnavailable(f"mysql-binlog: cannot connect to {mask_url(self.url)}: {exc}") from exc

    def _pub_exec(self, sql: str, args: Any = None, many: bool = False) -> Any:
        """On the publishing connection; reconnects once when it was cut."""
        import pymysql

        with self._pub_lock:
            for attempt in (0, 1):
                try:
                    if self._pub is None:
                        self._pub = self._connect()
                    with self._pub.cursor() as c:
                        if many:
                            c.executemany(sql, args)
                        else:
                            c.execute(sql, args)
                        return c.fetchall()
                except (pymysql.err.OperationalError, pymysql.err.InterfaceError):
                    with contextlib.suppress(Exception):
                        self._pub.close()
                    self._pub = None
                    if attempt:
                        raise
            return None

    def _ctl_exec(self, sql: str, args: Any = None) -> Any:
        """On the connection that holds the lock. A lost connection means a lost lock: reading restarts."""
        import pymysql

        with self._ctl_lock:
            try:
                if self._ctl is None:
                    self._ctl = self._connect()
                with self._ctl.cursor() as c:
                    c.execute(sql, args)
                    return c.fetchall(), c.rowcount
            except (pymysql.err.OperationalError, pymysql.err.InterfaceError):
                with contextlib.suppress(Exception):
                    self._ctl.close()
                self._ctl = None
                if self._holder:
                    self._lost = True
                raise

    def _setup(self) -> None:
        s = self.schema
        rows = self._pub_exec("SELECT @@log_bin, @@binlog_format, @@binlog_row_image")
        log_bin, fmt, image = rows[0]
        if str(log_bin) not in ("1", "ON") or str(fmt).upper() != "ROW" or str(image).upper() != "FULL":
            raise ConfigError(f"mysql-binlog needs the row-based binary log on the server ({mask_url(self.url)} has "
                              f"log_bin={log_bin}, binlog_format={fmt}, binlog_row_image={image}): start it with "
                              f"--log-bin --binlog-format=ROW --binlog-row-image=FULL --binlog-row-metadata=FULL "
                              f"--server-id=1")
        with contextlib.suppress(Exception):  # MySQL >= 8.0.1, MariaDB >= 10.5: column names in row events
            meta = self._pub_exec("SELECT @@binlog_row_metadata")[0][0]
            if str(meta).upper() != "FULL":
                self.log.warning("mysql-binlog: binlog_row_metadata=%s; set it to FULL or rows arrive with "
                                 "UNKNOWN_COLn column names", meta)
        self._pub_exec(f"CREATE DATABASE IF NOT EXISTS `{s}`")
        for ddl in (
            f"CREATE TABLE IF NOT EXISTS `{s}`.bk_binlog_checkpoint (queue VARCHAR(191) PRIMARY KEY, "
            f"ck VARCHAR(255) NOT NULL, hwm VARCHAR(255) NOT NULL DEFAULT '', owner VARCHAR(255) NOT NULL DEFAULT '', "
            f"updated_at DOUBLE NOT NULL DEFAULT 0)",
            f"CREATE TABLE IF NOT EXISTS `{s}`.{MESSAGES} (seq BIGINT AUTO_INCREMENT PRIMARY KEY, "
            f"queue VARCHAR(191) NOT NULL, id VARCHAR(255) NOT NULL, body LONGBLOB NOT NULL, eta DOUBLE NOT NULL DEFAULT 0)",
            f"CREATE TABLE IF NOT EXISTS `{s}`.bk_binlog_dead (seq BIGINT AUTO_INCREMENT PRIMARY KEY, "
            f"queue VARCHAR(191) NOT NULL, id VARCHAR(255) NOT NULL, body LONGBLOB NOT NULL, reason TEXT NOT NULL, "
            f"failed_at DOUBLE NOT NULL, INDEX (queue, seq))",
            f"CREATE TABLE IF NOT EXISTS `{s}`.bk_binlog_crashes (queue VARCHAR(191) NOT NULL, mkey VARCHAR(255) NOT NULL, "
            f"crashes INT NOT NULL, PRIMARY KEY (queue, mkey))",
        ):
            self._pub_exec(ddl)
        if not self._pub_exec(f"SELECT 1 FROM `{s}`.bk_binlog_checkpoint WHERE queue=%s", (self.queue,)):
            start = self._start_position()
            self._pub_exec(f"INSERT IGNORE INTO `{s}`.bk_binlog_checkpoint (queue, ck, updated_at) VALUES (%s,%s,%s)",
                           (self.queue, key_str(start), time.time()))

    def _start_position(self) -> Key:
        if self.start_at == "beginning":
            first = self._pub_exec("SHOW BINARY LOGS")[0]
            return (str(first[0]), 4, 0)
        for stmt in ("SHOW MASTER STATUS", "SHOW BINARY LOG STATUS"):
            with contextlib.suppress(Exception):
                rows = self._pub_exec(stmt)
                if rows:
                    return (str(rows[0][0]), int(rows[0][1]), 0)
        raise ConfigError(f"mysql-binlog: the server at {mask_url(self.url)} reports no binary log position "
                          f"(is log_bin on, and may this user run SHOW MASTER STATUS?)")

    # --- publishing ----------------------------------------------------------------------------------
    def publish(self, message: Outgoing) -> None:
        self.publish_many([message])

    def publish_many(self, messages: Sequence[Outgoing]) -> None:
        if not messages:
            return
        rows = [(self.queue, m.id, m.body, m.eta or 0.0) for m in messages]
        for i in range(0, len(rows), 500):
            self._pub_exec(f"INSERT INTO `{self.schema}`.{MESSAGES} (queue, id, body, eta) VALUES (%s,%s,%s,%s)",
                           rows[i:i + 500], many=True)

    # --- taking over the log -------------------------------------------------------------------------
    def _try_take_over(self) -> bool:
        now = time.monotonic()
        if now < self._next_lock_try:
            return False
        self._next_lock_try = now + self.lock_retry
        try:
            got = self._ctl_exec("SELECT GET_LOCK(%s, 0)", (self.lock_name,))[0]
        except Exception as exc:  # noqa: BLE001 - the server is away: try again later
            self.log.warning("mysql-binlog: cannot reach the server (%s); retrying", exc)
            return False
        if not got or got[0][0] != 1:
            return False
        s = self.schema
        rows = self._ctl_exec(f"SELECT ck, hwm, owner FROM `{s}`.bk_binlog_checkpoint WHERE queue=%s",
                              (self.queue,))[0]
        ck, hwm, prev = parse_key(rows[0][0]), parse_key(rows[0][1]), str(rows[0][2])
        self._crashes = {str(k): int(c) for k, c in self._ctl_exec(
            f"SELECT mkey, crashes FROM `{s}`.bk_binlog_crashes WHERE queue=%s", (self.queue,))[0]}
        self._charge_upto = _NO_KEY
        if prev and prev != self.owner and hwm > ck:
            ran = read_journal(self.journal_dir, prev)
            if ran is None:  # died on another host: charge every row it had fetched (conservative)
                self._charge_upto = hwm
            else:
                for k in ran:
                    if parse_key(k) >= ck:
                        self._charge(k)
            remove_journal(self.journal_dir, prev)
        self._ctl_exec(f"UPDATE `{s}`.bk_binlog_checkpoint SET owner=%s, updated_at=%s WHERE queue=%s",
                       (self.owner, time.time(), self.queue))
        self._prev_owner, self._prev_hwm = prev, hwm
        with self._state:
            self._epoch += 1
            self._holder, self._lost = True, False
            self._pending.clear()
            self._pending_seq.clear()
            self._tail = self._ck_written = ck
            self._hwm = max(hwm, ck)
            self._redo.clear()
            epoch = self._epoch
        self.journal.open()
        self._reader = threading.Thread(target=self._read, args=(epoch, ck), daemon=True,
                                        name=f"boostkernel-binlog-reader-{self.queue}")
        self._reader.start()
        if self._flusher is None:
            self._flusher = threading.Thread(target=self._flush_loop, daemon=True,
                                             name=f"boostkernel-binlog-checkpoint-{self.queue}")
            self._flusher.start()
        if prev and prev != self.owner:
            self.log.warning("mysql-binlog: took over queue %r from %s at %s", self.queue, prev, key_str(ck))
        return True

    def _charge(self, k: str) -> None:
        self._crashes[k] = self._crashes.get(k, 0) + 1
        self._ctl_exec(f"INSERT INTO `{self.schema}`.bk_binlog_crashes (queue, mkey, crashes) VALUES (%s,%s,1) "
                       f"ON DUPLICATE KEY UPDATE crashes=crashes+1", (self.queue, k))

    def _drop_reading(self) -> None:
        """Stop the reader and forget what was read (not checkpointed: the next holder reads it again)."""
        with self._state:
            self._epoch += 1
            self._holder = False
            self._pending.clear()
            self._pending_seq.clear()
            self._redo.clear()
        stream, self._stream = self._stream, None
        if stream is not None:
            sock: Any = getattr(getattr(stream, "_stream_connection", None), "_sock", None)
            if sock is not None:
                with contextlib.suppress(Exception):  # wakes the reader blocked in recv() at once
                    sock.shutdown(socket.SHUT_RDWR)
        while True:
            try:
                self._buf.get_nowait()
            except queue_mod.Empty:
                break
        if self._reader is not None:
            self._reader.join(5)
            self._reader = None

    # --- the reader thread -----------------------------------------------------------------------------
    def _read(self, epoch: int, ck: Key) -> None:
        from pymysqlreplication import BinLogStreamReader  # type: ignore[import-untyped]
        from pymysqlreplication.event import QueryEvent, RotateEvent, XidEvent  # type: ignore[import-untyped]
        from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent  # type: ignore[import-untyped]

        watched = {*self.tables, (self.schema, MESSAGES)}
        kinds = {WriteRowsEvent: "insert", UpdateRowsEvent: "update", DeleteRowsEvent: "delete"}
        stream = None
        try:
            stream = BinLogStreamReader(
                connection_settings=dict(self.settings), server_id=random.randint(100_000, 2**31 - 1),
                pymysql_wrapper=_pymysql_connect, blocking=True, resume_stream=True, log_file=ck[0], log_pos=ck[1], slave_heartbeat=1.0,
                only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent, XidEvent, QueryEvent, RotateEvent],
                only_schemas=sorted({db for db, _ in watched}), only_tables=sorted({t for _, t in watched}))
            self._stream = stream
            cur_file, txn, idx = ck[0], ck[1], 0
            for ev in stream:
                if self._epoch != epoch or self._closed.is_set():
                    break
                if isinstance(ev, RotateEvent):
                    cur_file, txn, idx = ev.next_binlog, int(ev.position), 0
                    self._advance(epoch, (cur_file, txn, 0))
                    continue
                if isinstance(ev, (XidEvent, QueryEvent)):
                    q = getattr(ev, "query", "") or ""
                    if isinstance(ev, QueryEvent) and q.strip().upper().startswith("BEGIN"):
                        continue
                    txn, idx = int(ev.packet.log_pos), 0
                    self._advance(epoch, (cur_file, txn, 0))
                    continue
                kind = kinds.get(type(ev))
                if kind is None:
                    continue
                table = (str(ev.schema), str(ev.table))
                for row in ev.rows:
                    k = (cur_file, txn, idx)
                    idx += 1
                    if k < ck or table not in watched:
                        continue
                    item = self._item(kind, table, row, k)
                    if not self._offer(epoch, k, item):
                        return
        except Exception as exc:  # noqa: BLE001 - connection lost, server restarted …: the fetcher restarts reading
            if self._epoch == epoch and not self._closed.is_set():
                self.log.warning("mysql-binlog: reading the binary log failed (%s: %s); reconnecting",
                                 type(exc).__name__, exc)
                self._lost = True
        finally:
            if stream is not None:
                with contextlib.suppress(Exception):
                    stream.close()
                # close() stops at the first connection that fails to close and skips one it thinks is gone
                # (after a reconnect of its own): close each that is still open. One left to the garbage
                # collector is freed in a reference cycle, where the socket may be finalized before pymysql
                # closes it: an "unclosed socket" ResourceWarning in whatever runs then (seen once in CI).
                for name in ("_stream_connection", "_ctl_connection"):
                    conn = getattr(stream, name, None)
                    if conn is not None and getattr(conn, "open", False):
                        with contextlib.suppress(Exception):
                            conn.close()

    def _item(self, kind: str, table: tuple[str, str], row: dict[str, Any], k: Key) -> tuple[str, bytes, float, int] | None:
        """(id, body, eta, seq) for a row, or None when it is not for this queue."""
        if table == (self.schema, MESSAGES):
            v = row.get("values") or row.get("after_values") or {}
            if kind != "insert" or v.get("queue") != self.queue:
                return None
            body = v.get("body")
            if isinstance(body, str):
                body = body.encode("utf-8", "surrogateescape")
            return str(v.get("id")), bytes(body or b""), float(v.get("eta") or 0.0), int(v.get("seq") or 0)
        if kind not in self.events:
            return None
        msg: dict[str, Any] = {"schema": table[0], "table": table[1], "event": kind}
        if kind == "update":
            msg["row"], msg["before"] = row.get("after_values"), row.get("before_values")
        else:
            msg["row"] = row.get("values")
        return key_str(k), json.dumps(msg, default=_json_default, separators=(",", ":")).encode(), 0.0, 0

    def _advance(self, epoch: int, k: Key) -> None:
        with self._state:
            if self._epoch == epoch and k > self._tail:
                self._tail = k

    def _offer(self, epoch: int, k: Key, item: tuple[str, bytes, float, int] | None) -> bool:
        """Hand a row to fetch (blocking while the buffer is full); False when reading must stop."""
        if item is not None:
            ks = key_str(k)
            c = self._crashes.get(ks, 0)
            if k <= self._charge_upto:
                self._charge(ks)
                c += 1
            if c >= self.max_crashes:
                reason = (f"crash-loop: the worker died {c} time(s) while running it "
                          f"(last: worker {self._prev_owner})")
                self._pub_exec(f"INSERT INTO `{self.schema}`.bk_binlog_dead (queue, id, body, reason, failed_at) "
                               f"VALUES (%s,%s,%s,%s,%s)", (self.queue, item[0], item[1], reason, time.time()))
                self.log.error("message %s dead-lettered: %s", item[0], reason)
                item = None
        with self._state:
            if self._epoch != epoch:
                return False
            if item is not None:
                self._pending[k] = False
                if item[3]:
                    self._pending_seq[k] = item[3]
            if k >= self._tail:
                self._tail = (k[0], k[1], k[2] + 1)
        if item is None:
            return True
        while not self._closed.is_set() and self._epoch == epoch:
            try:
                self._buf.put((epoch, k, item[0], item[1], item[2], self._crashes.get(key_str(k), 0)), timeout=0.2)
                return True
            except queue_mod.Full:
                continue
        return False

    # --- consuming -----------------------------------------------------------------------------------
    def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        while True:
            if self._lost:
                self._drop_reading()
                self._lost = False
            if not self._holder:
                self._try_take_over()
            out = self._take(max_messages) if self._holder else []
            if out:
                self._record_hwm(out)
                return out
            left = deadline - time.monotonic()
            if left <= 0 or self._closed.is_set():
                return []
            wait = min(left, 0.05)
            if not self._holder:
                wait = min(left, max(0.01, self._next_lock_try - time.monotonic()))
                time.sleep(wait)
                continue
            try:
                item = self._buf.get(timeout=wait)
            except queue_mod.Empty:
                continue
            self._peeked = item

    _peeked: tuple[int, Key, str, bytes, float, int] | None = None

    def _take(self, n: int) -> list[Delivery]:
        out: list[Delivery] = []
        now = time.time()
        epoch = self._epoch
        with self._state:
            while self._redo and self._redo[0][0] <= now and len(out) < n:
                d = heapq.heappop(self._redo)[2]
                if d.tag[0] == epoch:
                    out.append(d)
        while len(out) < n:
            item = self._peeked
            if item is not None:
                self._peeked = None
            else:
                try:
                    item = self._buf.get_nowait()
                except queue_mod.Empty:
                    break
            ep, k, mid, body, eta, crashes = item
            if ep != epoch:
                continue
            count = max(2 if k <= self._prev_hwm else 1, crashes + 1)
            d = Delivery(mid, body, (ep, k), count, crashes=crashes)
            if eta > now:
                with self._state:
                    self._redo_n += 1
                    heapq.heappush(self._redo, (eta, self._redo_n, d))
                continue
            out.append(d)
        return out

    def _record_hwm(self, out: list[Delivery]) -> None:
        top = max(d.tag[1] for d in out)
        if top > self._hwm:
            self._hwm = top
            with contextlib.suppress(Exception):  # lost: _lost is set and reading restarts
                self._ctl_exec(f"UPDATE `{self.schema}`.bk_binlog_checkpoint SET hwm=%s WHERE queue=%s AND owner=%s",
                               (key_str(top), self.queue, self.owner))

    def started(self, delivery: Delivery) -> None:
        self.journal.started(key_str(delivery.tag[1]))

    def _settle(self, delivery: Delivery) -> None:
        ep, k = delivery.tag
        with self._state:
            if ep == self._epoch and k in self._pending:
                self._pending[k] = True
                self._settled = True
        self.journal.finished(key_str(k))

    def ack(self, delivery: Delivery) -> None:
        self._settle(delivery)

    def nack(self, delivery: Delivery, requeue: bool = True, delay: float = 0.0) -> None:
        if not requeue:
            self._settle(delivery)
            return
        self.journal.finished(key_str(delivery.tag[1]))
        d = Delivery(delivery.id, delivery.body, delivery.tag, delivery.delivery_count + 1, crashes=delivery.crashes)
        with self._state:
            if delivery.tag[0] == self._epoch:
                self._redo_n += 1
                heapq.heappush(self._redo, (time.time() + max(0.0, delay), self._redo_n, d))

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self._pub_exec(f"INSERT INTO `{self.schema}`.bk_binlog_dead (queue, id, body, reason, failed_at) "
                       f"VALUES (%s,%s,%s,%s,%s)", (self.queue, delivery.id, delivery.body, reason, time.time()))
        self._settle(delivery)

    # --- the checkpoint --------------------------------------------------------------------------------
    def _checkpoint(self) -> tuple[Key, int]:
        """The first unsettled key (or the position after everything read) and the highest pushed-message
        seq below it (those rows can be deleted)."""
        seq = 0
        with self._state:
            while self._pending:
                k, done = next(iter(self._pending.items()))
                if not done:
                    return k, seq
                self._pending.popitem(last=False)
                seq = max(seq, self._pending_seq.pop(k, 0))
            return self._tail, seq

    def flush(self) -> None:
        if not self._holder or self._lost:
            return
        epoch = self._epoch
        ck, seq = self._checkpoint()
        # Our own checkpoint writes are transactions in the log too: write only after a settle (or once a
        # minute), or every write would move the position and call for the next one.
        due = self._settled or time.monotonic() - self._ck_written_at > 60
        if ck > self._ck_written and epoch == self._epoch and due:
            self._settled = False
            _, n = self._ctl_exec(f"UPDATE `{self.schema}`.bk_binlog_checkpoint SET ck=%s, updated_at=%s "
                                  f"WHERE queue=%s AND owner=%s", (key_str(ck), time.time(), self.queue, self.owner))
            if n == 0:  # another consumer owns the queue now: stop reading
                self._lost = True
                return
            self._ck_written, self._ck_written_at = ck, time.monotonic()
            if seq:
                self._pub_exec(f"DELETE FROM `{self.schema}`.{MESSAGES} WHERE queue=%s AND seq<=%s", (self.queue, seq))
            if self._crashes:
                gone = [k for k in self._crashes if parse_key(k) < ck]
                for k in gone:
                    self._crashes.pop(k, None)
                if gone:
                    self._ctl_exec(f"DELETE FROM `{self.schema}`.bk_binlog_crashes WHERE queue=%s AND mkey<%s",
                                   (self.queue, key_str(ck)))

    def _flush_loop(self) -> None:
        while not self._closed.wait(self.flush_interval):
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 - lost connection: reading restarts from the checkpoint
                self.log.warning("mysql-binlog: checkpoint not written (%s)", exc)

    # --- dead letters ---------------------------------------------------------------------------------
    def dead_letters(self, limit: int = 100) -> list[DeadLetterRecord]:
        rows = self._pub_exec(f"SELECT seq, id, body, reason, failed_at FROM `{self.schema}`.bk_binlog_dead "
                              f"WHERE queue=%s ORDER BY seq LIMIT %s", (self.queue, limit))
        return [DeadLetterRecord(str(r[1]), bytes(r[2]), str(r[3]), float(r[4]), int(r[0])) for r in rows]

    def replay_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        rows = [r for r in self.dead_letters(1_000_000) if ids is None or r.id in ids]
        if not rows:
            return 0
        self.publish_many([Outgoing(r.id, r.body) for r in rows])
        seqs = [r.tag for r in rows]
        for i in range(0, len(seqs), 500):
            chunk = seqs[i:i + 500]
            self._pub_exec(f"DELETE FROM `{self.schema}`.bk_binlog_dead WHERE seq IN ({','.join(['%s'] * len(chunk))})",
                           chunk)
        return len(rows)

    def purge_dead_letters(self) -> int:
        n = len(self.dead_letters(1_000_000))
        self._pub_exec(f"DELETE FROM `{self.schema}`.bk_binlog_dead WHERE queue=%s", (self.queue,))
        return n

    # --- lifecycle -------------------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed.is_set():
            return
        with contextlib.suppress(Exception):
            self.flush()
        self._closed.set()
        self._drop_reading()
        if self._flusher is not None:
            self._flusher.join(5)
        for conn in (self._ctl, self._pub):  # closing the lock's connection releases the lock
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
        self._ctl = self._pub = None
        self.journal.close()

    def describe(self) -> dict[str, Any]:
        return {"broker": self.name, "queue": self.queue, "url": mask_url(self.url),
                "tables": sorted(f"{d}.{t}" for d, t in self.tables)}
