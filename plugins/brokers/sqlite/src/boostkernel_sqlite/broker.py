"""The SQLite broker: durable at-least-once queues in one WAL file, correct across processes on one host.

* **Claim** is one ``UPDATE … RETURNING`` inside ``BEGIN IMMEDIATE``: the rows become ``running``, owned by
  this consumer, with a lease; there is no window in which a fetched message is recorded nowhere.
* A **heartbeat thread** extends the leases of this consumer's rows, so long tasks of a live worker are
  never redelivered, and flushes acks in batches.
* The **reaper** (same thread, on a timer, under SQLite's write lock) returns rows whose lease expired —
  their worker died — to the queue. A crash is counted only for the rows that were *running* when the
  worker died (the kernel calls :meth:`SqliteBroker.started`, which appends ``seq:delivery`` to a small
  per-consumer file next to the database, see :mod:`boostkernel.journal`); prefetched rows go back
  uncharged. After ``max_deliveries`` crashes the message goes to the dead-letter table with reason
  ``crash-loop``. Defaults (lease 10 s, heartbeat and reaper every 2 s) bring a killed worker's messages
  back within about 12 s.
* A row whose body is not a BLOB (written by foreign SQL) is read as UTF-8 when it is TEXT; any other
  type goes to the dead-letter table with the reason, in the claiming transaction.
* **Ack** deletes the row (batched: acks are written within ``ack_flush_interval`` or at the next fetch).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from typing import Any

from boostkernel.broker import Broker, BrokerCapabilities, DeadLetterRecord, Delivery, Outgoing, poll_claims
from boostkernel.journal import RunningJournal, consumer_id, read_journal, remove_journal, sweep_journals

from .db import Database, path_from_url

SCHEMA = """
CREATE TABLE IF NOT EXISTS bk_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    id TEXT NOT NULL,
    body BLOB NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    eta REAL NOT NULL DEFAULT 0,
    state INTEGER NOT NULL DEFAULT 0,          -- 0 ready, 1 running, 2 delayed
    owner TEXT,
    lease_until REAL,
    deliveries INTEGER NOT NULL DEFAULT 0,
    crashes INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS bk_messages_ready ON bk_messages (queue, state, priority DESC, seq);
CREATE INDEX IF NOT EXISTS bk_messages_due ON bk_messages (queue, state, eta);
CREATE INDEX IF NOT EXISTS bk_messages_owner ON bk_messages (owner) WHERE owner IS NOT NULL;
CREATE INDEX IF NOT EXISTS bk_messages_lease ON bk_messages (queue, state, lease_until);
CREATE TABLE IF NOT EXISTS bk_dead (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    id TEXT NOT NULL,
    body BLOB NOT NULL,
    reason TEXT NOT NULL,
    failed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS bk_dead_queue ON bk_dead (queue, seq);
"""

READY, RUNNING, DELAYED = 0, 1, 2
# Local publishes wake local fetchers at once; other processes are found by polling.
_wakeups: dict[str, threading.Condition] = {}


class SqliteBroker(Broker):
    name = "sqlite"
    capabilities = BrokerCapabilities(
        ack=True, requeue=True, priority=True, delay=True, durable=True, count=True, purge=True,
        batch_publish=True, dead_letter=True, cross_process=True,
    )

    def __init__(self, queue: str, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(queue, url, params, **options)
        o = self.options
        self.lease = float(o.get("lease", 10.0))
        """Seconds after its worker's last heartbeat that a running message is given to another worker."""
        self.heartbeat_interval = float(o.get("heartbeat_interval", min(2.0, self.lease / 4)))
        self.reap_interval = float(o.get("reap_interval", min(2.0, self.lease / 4)))
        self.ack_flush_interval = float(o.get("ack_flush_interval", 0.05))
        self.path = path_from_url(self.url, params, f"queue-{queue}.db")
        self.db = Database(self.path, SCHEMA)
        self.owner = consumer_id()
        self.journal_dir = f"{self.path}.running"
        self.journal = RunningJournal(self.journal_dir, self.owner)
        self._next_sweep = 0.0
        self._acks: list[int] = []
        self._acks_lock = threading.Lock()
        self._wake = _wakeups.setdefault(str(self.path), threading.Condition())
        self._hb_thread: threading.Thread | None = None
        self._closed = threading.Event()

    # --- publishing -----------------------------------------------------------------------------
    def _row(self, m: Outgoing, now: float) -> tuple[Any, ...]:
        delayed = m.eta is not None and m.eta > now
        return (self.queue, m.id, m.body, m.priority, m.eta or 0.0, DELAYED if delayed else READY)

    def publish(self, message: Outgoing) -> None:
        row = self._row(message, time.time())
        self.db.execute("INSERT INTO bk_messages (queue, id, body, priority, eta, state) VALUES (?,?,?,?,?,?)", row)
        self._notify()

    def publish_many(self, messages: Sequence[Outgoing]) -> None:
        now = time.time()
        rows = [self._row(m, now) for m in messages]
        self.db.write(lambda c: c.executemany(
            "INSERT INTO bk_messages (queue, id, body, priority, eta, state) VALUES (?,?,?,?,?,?)", rows))
        self._notify()

    def _notify(self) -> None:
        with self._wake:
            self._wake.notify_all()

    # --- consuming ------------------------------------------------------------------------------
    def _claim(self, n: int) -> list[Delivery]:
        now = time.time()
        with self._acks_lock:
            acks, self._acks = self._acks, []

        def tx(c: sqlite3.Connection) -> list[Any]:
            if acks:
                self._delete(c, acks)
            c.execute("UPDATE bk_messages SET state=0 WHERE queue=? AND state=2 AND eta<=?", (self.queue, now))
            got = c.execute(
                "UPDATE bk_messages SET state=1, owner=?, lease_until=?, deliveries=deliveries+1 "
                "WHERE seq IN (SELECT seq FROM bk_messages WHERE queue=? AND state=0 "
                "ORDER BY priority DESC, seq LIMIT ?) RETURNING seq, id, body, deliveries, priority, crashes",
                (self.owner, now + self.lease, self.queue, n),
            ).fetchall()
            if any(type(r[2]) is not bytes for r in got):
                got = self._malformed(c, got, now)
            return got

        rows = self.db.write(tx)
        if len(rows) > 1:
            rows.sort(key=lambda r: (-r[4], r[0]))
        return [Delivery(r[1], r[2], r[0], r[3], crashes=r[5]) for r in rows]

    def _malformed(self, c: sqlite3.Connection, rows: list[Any], now: float) -> list[Any]:
        """Rows written by foreign SQL: TEXT is read as UTF-8; any other type is dead-lettered with the reason."""
        out = []
        for r in rows:
            body = r[2]
            if type(body) is bytes:
                out.append(r)
            elif isinstance(body, str):
                out.append((r[0], r[1], body.encode(errors="surrogateescape"), r[3], r[4], r[5]))
            else:
                reason = (f"malformed row: its body is {type(body).__name__} {str(body)[:60]!r}, "
                          f"not the bytes of a JSON message")
                self.log.error("message %s rejected to the dead-letter queue: %s", r[1], reason)
                c.execute("INSERT INTO bk_dead (queue, id, body, reason, failed_at) VALUES (?,?,?,?,?)",
                          (self.queue, str(r[1]), str(body).encode(), reason, now))
                c.execute("DELETE FROM bk_messages WHERE seq=?", (r[0],))
        return out

    def _delete(self, c: sqlite3.Connection, seqs: list[int]) -> None:
        for i in range(0, len(seqs), 500):
            chunk = seqs[i:i + 500]
            c.execute(f"DELETE FROM bk_messages WHERE seq IN ({','.join('?' * len(chunk))})", chunk)

    def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        if self._hb_thread is None:
            self._start_heartbeat()
        return poll_claims(lambda: self._claim(max_messages), timeout, self._wake, self._closed, longest=0.1)

    def started(self, delivery: Delivery) -> None:
        """Record that this delivery's function runs now (one write(2) to the journal; see the module doc)."""
        self.journal.started(f"{delivery.tag}:{delivery.delivery_count}")

    def ack(self, delivery: Delivery) -> None:
        with self._acks_lock:
            self._acks.append(delivery.tag)
        self.journal.finished(f"{delivery.tag}:{delivery.delivery_count}")

    def flush_acks(self) -> None:
        with self._acks_lock:
            acks, self._acks = self._acks, []
        if acks:
            self.db.write(lambda c: self._delete(c, acks))

    def nack(self, delivery: Delivery, requeue: bool = True, delay: float = 0.0) -> None:
        self.journal.finished(f"{delivery.tag}:{delivery.delivery_count}")
        if not requeue:
            self.db.write(lambda c: self._delete(c, [delivery.tag]))
            return
        eta = time.time() + delay if delay > 0 else 0.0
        state = DELAYED if delay > 0 else READY
        self.db.write(lambda c: c.execute(
            "UPDATE bk_messages SET state=?, eta=?, owner=NULL, lease_until=NULL WHERE seq=? AND owner=?",
            (state, eta, delivery.tag, self.owner)))
        self._notify()

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self.journal.finished(f"{delivery.tag}:{delivery.delivery_count}")

        def tx(c: sqlite3.Connection) -> None:
            c.execute("INSERT INTO bk_dead (queue, id, body, reason, failed_at) VALUES (?,?,?,?,?)",
                      (self.queue, delivery.id, delivery.body, reason, time.time()))
            c.execute("DELETE FROM bk_messages WHERE seq=?", (delivery.tag,))

        self.db.write(tx)

    # --- heartbeat, ack flushing and the reaper ---------------------------------------------------
    def _start_heartbeat(self) -> None:
        self.journal.open()
        self._hb_thread = threading.Thread(target=self._heartbeat_loop, daemon=True,
                                           name=f"boostkernel-sqlite-heartbeat-{self.queue}")
        self._hb_thread.start()

    def _heartbeat_loop(self) -> None:
        next_beat = next_reap = 0.0
        while not self._closed.wait(self.ack_flush_interval):
            try:
                self.flush_acks()
                now = time.monotonic()
                if now >= next_beat:
                    self.db.write(lambda c: c.execute(
                        "UPDATE bk_messages SET lease_until=? WHERE owner=? AND state=1",
                        (time.time() + self.lease, self.owner)))
                    self.journal.touch()
                    next_beat = now + self.heartbeat_interval
                if now >= next_reap:
                    self.reap()
                    next_reap = now + self.reap_interval
            except sqlite3.Error as exc:  # the file is busy or gone: try again next tick
                if self._closed.is_set():
                    return
                self.log.warning("sqlite heartbeat failed: %s", exc)

    def reap(self) -> int:
        """Return messages of dead workers (expired lease) to the queue; dead-letter crash loops.

        Only the rows their worker had started (its journal says so) are charged a crash; when a dead
        worker left no journal here, every row it held is charged (the conservative fallback).
        """
        now = time.time()
        dead_owners: set[str] = set()

        def tx(c: sqlite3.Connection) -> int:
            rows = c.execute("SELECT seq, owner, deliveries, crashes FROM bk_messages "
                             "WHERE queue=? AND state=1 AND lease_until<?", (self.queue, now)).fetchall()
            if not rows:
                return 0
            journals: dict[str, set[str] | None] = {}
            back, charged, dead = [], [], []
            for seq, owner, deliveries, crashes in rows:
                owner = owner or ""
                if owner not in journals:
                    journals[owner] = read_journal(self.journal_dir, owner)
                    dead_owners.add(owner)
                ran = journals[owner]
                if ran is not None and f"{seq}:{deliveries}" not in ran:
                    back.append(seq)
                elif crashes + 1 >= self.max_crashes:
                    dead.append((f"crash-loop: the worker died {crashes + 1} time(s) while running it "
                                 f"(last: worker {owner})", seq))
                else:
                    charged.append(seq)
            for reason, seq in dead:
                c.execute("INSERT INTO bk_dead (queue, id, body, reason, failed_at) "
                          "SELECT queue, id, body, ?, ? FROM bk_messages WHERE seq=?", (reason, now, seq))
                c.execute("DELETE FROM bk_messages WHERE seq=?", (seq,))
                self.log.error("message at seq %d dead-lettered: %s", seq, reason)
            c.executemany("UPDATE bk_messages SET state=0, owner=NULL, lease_until=NULL WHERE seq=?",
                          [(s,) for s in back])
            c.executemany("UPDATE bk_messages SET state=0, owner=NULL, lease_until=NULL, crashes=crashes+1 "
                          "WHERE seq=?", [(s,) for s in charged])
            return len(back) + len(charged)

        n = self.db.write(tx)
        for owner in dead_owners:
            remove_journal(self.journal_dir, owner)
        if time.monotonic() >= self._next_sweep:  # journals of workers that died holding nothing
            self._next_sweep = time.monotonic() + 60
            sweep_journals(self.journal_dir, max(60.0, 10 * self.lease))
        if n:
            self.log.warning("recovered %d message(s) from dead workers of queue %r", n, self.queue)
            self._notify()
        return n

    # --- dead letters ------------------------------------------------------------------------------
    def dead_letters(self, limit: int = 100) -> list[DeadLetterRecord]:
        rows = self.db.read("SELECT seq, id, body, reason, failed_at FROM bk_dead WHERE queue=? ORDER BY seq LIMIT ?",
                            (self.queue, limit))
        return [DeadLetterRecord(r[1], r[2], r[3], r[4], r[0]) for r in rows]

    def replay_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        def tx(c: sqlite3.Connection) -> int:
            where, args = "queue=?", [self.queue]
            if ids is not None:
                where += f" AND id IN ({','.join('?' * len(ids))})"
                args += list(ids)
            c.execute(f"INSERT INTO bk_messages (queue, id, body) SELECT queue, id, body FROM bk_dead "
                      f"WHERE {where} ORDER BY seq", args)
            return c.execute(f"DELETE FROM bk_dead WHERE {where}", args).rowcount

        n = self.db.write(tx)
        self._notify()
        return n

    def purge_dead_letters(self) -> int:
        return self.db.write(lambda c: c.execute("DELETE FROM bk_dead WHERE queue=?", (self.queue,)).rowcount)

    # --- inspection and lifecycle -------------------------------------------------------------------
    def count(self) -> int:
        return int(self.db.read("SELECT COUNT(*) FROM bk_messages WHERE queue=? AND state IN (0, 2)",
                                (self.queue,))[0][0])

    def in_flight(self) -> int:
        return int(self.db.read("SELECT COUNT(*) FROM bk_messages WHERE queue=? AND state=1", (self.queue,))[0][0])

    def purge(self) -> int:
        return self.db.write(lambda c: c.execute(
            "DELETE FROM bk_messages WHERE queue=? AND state IN (0, 2)", (self.queue,)).rowcount)

    def close(self) -> None:
        if not self.stop_background(self._closed, self._hb_thread, 5):
            return
        try:
            self.flush_acks()
            self.db.write(lambda c: c.execute(
                "UPDATE bk_messages SET state=0, owner=NULL, lease_until=NULL WHERE owner=? AND state=1",
                (self.owner,)))
        except sqlite3.Error as exc:
            self.log.warning("could not return unacked messages on close (their lease will expire): %s", exc)
        self.db.close()
        self.journal.close()

    def describe(self) -> dict[str, Any]:
        return {"broker": self.name, "queue": self.queue, "path": str(self.path)}
