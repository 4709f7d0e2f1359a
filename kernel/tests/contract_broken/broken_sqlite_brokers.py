"""Deliberately broken SQLite brokers: each breaks one delivery rule, and the contract must catch it.

Imported by name in the contract's consumer processes, so this file is put on ``PYTHONPATH``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import deque
from typing import Any

from boostkernel_sqlite.broker import SqliteBroker
from boostkernel_sqlite.db import Database

from boostkernel.broker import Delivery


class RacyClaim(SqliteBroker):
    """SELECT the ready rows, then UPDATE them in a second transaction: two consumers claim the same row."""

    def _claim(self, n: int) -> list[Delivery]:
        self.flush_acks()
        now = time.time()
        rows = self.db.read("SELECT seq, id, body, deliveries FROM bk_messages WHERE queue=? AND state=0 "
                            "ORDER BY priority DESC, seq LIMIT ?", (self.queue, n))
        if not rows:
            return []
        time.sleep(0.002)  # the window every racy claim has, made wide enough to hit on a busy machine
        seqs = [r[0] for r in rows]
        self.db.write(lambda c: c.execute(
            f"UPDATE bk_messages SET state=1, owner=?, lease_until=?, deliveries=deliveries+1 "
            f"WHERE seq IN ({','.join('?' * len(seqs))})", (self.owner, now + self.lease, *seqs)))
        return [Delivery(r[1], r[2], r[0], r[3] + 1) for r in rows]


class NoReaper(SqliteBroker):
    """Never returns the messages of dead consumers."""

    def reap(self) -> int:
        return 0


class NoLeaseExtension(SqliteBroker):
    """Takes a lease at fetch and never renews it: a long task of a live consumer is given to another."""

    def __init__(self, queue: str, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(queue, url, params, **options)
        self.heartbeat_interval = 1e9  # the first beat at start, then never again


class NoCrashLoopLimit(SqliteBroker):
    """Returns a message that killed its consumer any number of times: never dead-lettered."""

    def __init__(self, queue: str, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(queue, url, params, **options)
        self.max_crashes = 1_000_000


class NackDelayIgnored(SqliteBroker):
    """``nack(delay=d)`` puts the message back at once."""

    def nack(self, delivery: Delivery, requeue: bool = True, delay: float = 0.0) -> None:
        super().nack(delivery, requeue, 0.0)


class _NoReconnectDatabase(Database):
    def _reconnect_if_lost(self, exc: sqlite3.ProgrammingError) -> None:
        raise exc


class NoReconnect(SqliteBroker):
    """A lost connection stays lost: the next publish raises."""

    def __init__(self, queue: str, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(queue, url, params, **options)
        self.db.close()
        self.db = _NoReconnectDatabase(self.path, "SELECT 1;")


class CountsInFlight(SqliteBroker):
    """``count()`` includes messages being worked on."""

    def count(self) -> int:
        return int(self.db.read("SELECT COUNT(*) FROM bk_messages WHERE queue=?", (self.queue,))[0][0])


class PurgeDeletesInFlight(SqliteBroker):
    """``purge()`` deletes in-flight messages too: a running task's message is lost."""

    def purge(self) -> int:
        def tx(c: sqlite3.Connection) -> int:
            waiting = c.execute("SELECT COUNT(*) FROM bk_messages WHERE queue=? AND state IN (0, 2)",
                                (self.queue,)).fetchone()[0]
            c.execute("DELETE FROM bk_messages WHERE queue=?", (self.queue,))
            return int(waiting)

        return self.db.write(tx)


class CloseKeepsPrefetched(SqliteBroker):
    """``close()`` leaves unacked prefetched messages to a (60 s) lease instead of returning them."""

    def __init__(self, queue: str, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(queue, url, params, **{**options, "lease": 60.0})

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        if self._hb_thread is not None:
            self._hb_thread.join(5)
        self.flush_acks()
        self.db.close()


class CloseNotIdempotent(SqliteBroker):
    """A second ``close()`` raises."""

    def close(self) -> None:
        if self._closed.is_set():
            raise RuntimeError("already closed")
        super().close()


class BufferedSqlite(SqliteBroker):
    """Not broken: a broker with a client-side buffer, as AMQP's prefetch has. Each claim takes up to
    ``WINDOW`` messages (in flight on the "server", owned by this consumer); ``fetch`` returns what it was
    asked for and keeps the rest for the next one, and ``buffered()`` reports them."""

    WINDOW = 8

    def __init__(self, queue: str, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(queue, url, params, **options)
        self._ahead: deque[Delivery] = deque()
        self._ahead_lock = threading.Lock()

    def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        with self._ahead_lock:
            if self._ahead:
                return [self._ahead.popleft() for _ in range(min(max_messages, len(self._ahead)))]
        got = super().fetch(max(max_messages, self.WINDOW), timeout)
        with self._ahead_lock:
            self._ahead.extend(got[max_messages:])
        return got[:max_messages]

    def buffered(self) -> int:
        return len(self._ahead)

    def close(self) -> None:
        super().close()  # returns every unacked message this consumer claimed, buffered ones too
        with self._ahead_lock:
            self._ahead.clear()


class BufferNotReported(BufferedSqlite):
    """Buffers ahead like :class:`BufferedSqlite` but ``buffered()`` says 0: count and purge do not add up."""

    def buffered(self) -> int:
        return 0


class BufferOverReported(SqliteBroker):
    """Buffers nothing but ``buffered()`` claims 2: it would excuse a count or purge that misses 2 messages."""

    def buffered(self) -> int:
        return 2


class BufferedPurgeDeletesInFlight(BufferedSqlite):
    """A buffering broker whose ``purge()`` reports the waiting messages but deletes the in-flight ones too
    (fetched and buffered)."""

    purge = PurgeDeletesInFlight.purge
