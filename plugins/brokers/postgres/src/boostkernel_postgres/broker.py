"""The PostgreSQL broker: durable at-least-once queues in ordinary tables, shared by any number of hosts.

* **Claim** is one statement: ``UPDATE … FROM (SELECT … FOR UPDATE SKIP LOCKED LIMIT n) RETURNING``. The
  rows get this consumer as their ``owner`` in the same atomic step that selects them; competing consumers
  skip each other's locked rows instead of waiting. Pending acks ride on the same statement (a ``DELETE``
  in a ``WITH`` clause), so a busy consumer settles and fetches in one round trip.
* **LISTEN/NOTIFY**: every publish (one ``pg_notify`` per statement, in the same transaction) wakes idle
  consumers at once; nothing polls faster than ``idle_poll``.
* **Heartbeats, not visibility timeouts**: a dedicated thread per consumer writes its row in
  ``bk_consumers`` every ``heartbeat_interval`` seconds. The reaper (same thread, every ``reap_interval``,
  on every live consumer; concurrent reapers skip each other's rows) returns the rows of consumers whose
  heartbeat is older than ``dead_after`` to the queue, counting a crash; a message whose consumer died
  ``max_deliveries`` times goes to the dead-letter table (``crash-loop``). A long task of a live worker is
  never redelivered, however long it runs.
* Priority (higher first, then publish order) and native delay (``eta``, on the database's clock).
* Acks are batched: written within ``ack_flush_interval`` (20 ms) by the heartbeat thread or with the next
  claim. After a kill -9 a few finished tasks may therefore run again (at-least-once).
* Connection errors: the consume loop retries fetches with capped backoff; publishes retry for
  ``publish_timeout`` seconds; the heartbeat thread retries every tick. A claim whose reply was lost is
  recovered by the next claim (rows this consumer owns that it does not know are delivered then).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar

import psycopg

from boostkernel.broker import DeadLetterRecord, Delivery, Outgoing
from boostkernel.errors import BrokerUnavailable
from boostkernel.leasing import LeasedBroker
from boostkernel.logs import mask_url

from ._db import (
    CONNECTION_ERRORS,
    DEFAULT_SCHEMA,
    DEFAULT_URL,
    NOW,
    Link,
    channel,
    check_schema,
    check_url,
    ensure_schema,
)

DDL = """
CREATE TABLE IF NOT EXISTS {s}.bk_messages (
    seq bigserial PRIMARY KEY,
    queue text NOT NULL,
    id text NOT NULL,
    body bytea NOT NULL,
    priority integer NOT NULL DEFAULT 0,
    eta double precision NOT NULL DEFAULT 0,
    owner text,
    running boolean NOT NULL DEFAULT false,
    deliveries integer NOT NULL DEFAULT 0,
    crashes integer NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS bk_messages_ready ON {s}.bk_messages (queue, priority DESC, seq) WHERE owner IS NULL;
CREATE INDEX IF NOT EXISTS bk_messages_owner ON {s}.bk_messages (owner) WHERE owner IS NOT NULL;
CREATE TABLE IF NOT EXISTS {s}.bk_consumers (
    owner text PRIMARY KEY,
    queue text NOT NULL,
    beat_at double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS bk_consumers_queue ON {s}.bk_consumers (queue);
CREATE TABLE IF NOT EXISTS {s}.bk_dead (
    seq bigserial PRIMARY KEY,
    queue text NOT NULL,
    id text NOT NULL,
    body bytea NOT NULL,
    reason text NOT NULL,
    failed_at double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS bk_dead_queue ON {s}.bk_dead (queue, seq);
"""

_BATCH = 5000


class PostgresBroker(LeasedBroker):
    name = "postgres"
    default_url = DEFAULT_URL
    default_store = "postgres"
    connection_errors: ClassVar[tuple[type[BaseException], ...]] = (psycopg.Error, *CONNECTION_ERRORS)
    default_idle_poll = 1.0
    wakes_on_publish = True

    def __init__(self, queue: str, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(queue, check_url(url), params, **options)
        o = self.options
        self.schema = check_schema(o.get("schema", DEFAULT_SCHEMA))
        s = f'"{self.schema}"'
        self.t_msg, self.t_cons, self.t_dead = f"{s}.bk_messages", f"{s}.bk_consumers", f"{s}.bk_dead"
        self.channel = channel(self.schema, queue)
        app = f"boostkernel:{self.owner}"
        assert self.url is not None
        self._pub = Link(self.url, o, app)  # publish, nack, dead letters, inspection (any thread)
        self._fetch = Link(self.url, o, app, self._listen)  # claims + LISTEN (the consumer thread)
        self._maint = Link(self.url, o, app)  # heartbeat, acks, reaper (the heartbeat thread)
        ensure_schema(self._pub, self.schema, "broker", DDL)
        self._sql()

    def _sql(self) -> None:
        t = self.t_msg
        self.q_insert = (f"WITH i AS (INSERT INTO {t} (queue, id, body, priority, eta) VALUES (%s, %s, %s, %s, %s)) "
                         f"SELECT pg_notify(%s, '')")
        self.q_insert_delayed = f"INSERT INTO {t} (queue, id, body, priority, eta) VALUES (%s, %s, %s, %s, %s)"
        self.q_insert_many = (
            f"WITH i AS (INSERT INTO {t} (queue, id, body, priority, eta) SELECT %s, u.* FROM "
            f"unnest(%s::text[], %s::bytea[], %s::integer[], %s::double precision[]) AS u) SELECT pg_notify(%s, '')")
        self.q_claim = (
            f"WITH a AS (DELETE FROM {t} WHERE seq = ANY(%(acks)s) AND owner = %(owner)s), "
            f"c AS (SELECT seq FROM {t} WHERE queue = %(q)s AND owner IS NULL AND eta <= {NOW} "
            f"ORDER BY priority DESC, seq LIMIT %(n)s FOR UPDATE SKIP LOCKED) "
            f"UPDATE {t} m SET owner = %(owner)s, running = false, deliveries = m.deliveries + 1 FROM c WHERE m.seq = c.seq "
            f"RETURNING m.seq, m.id, m.body, m.deliveries, m.priority")
        self.q_ack = f"DELETE FROM {t} WHERE seq = ANY(%s) AND owner = %s"
        self.q_beat = (f"INSERT INTO {self.t_cons} (owner, queue, beat_at) VALUES (%s, %s, {NOW}) "
                       f"ON CONFLICT (owner) DO UPDATE SET beat_at = excluded.beat_at")
        self.q_reap = (
            f"WITH orphan AS (SELECT m.seq FROM {t} m WHERE m.queue = %(q)s AND m.owner IS NOT NULL "
            f"  AND NOT EXISTS (SELECT 1 FROM {self.t_cons} c WHERE c.owner = m.owner "
            f"                  AND c.beat_at > {NOW} - %(dead_after)s) "
            f"  FOR UPDATE OF m SKIP LOCKED), "
            f"dead AS (DELETE FROM {t} m USING orphan o WHERE m.seq = o.seq AND m.running "
            f"  AND m.crashes + 1 >= %(maxc)s RETURNING m.queue, m.id, m.body, m.crashes), "
            f"ins AS (INSERT INTO {self.t_dead} (queue, id, body, reason, failed_at) SELECT queue, id, body, "
            f"  'crash-loop: its worker died ' || (crashes + 1) || ' time(s) while running it', {NOW} FROM dead), "
            f"back AS (UPDATE {t} m SET owner = NULL, running = false, "
            f"  crashes = m.crashes + CASE WHEN m.running THEN 1 ELSE 0 END FROM orphan o "
            f"  WHERE m.seq = o.seq AND NOT (m.running AND m.crashes + 1 >= %(maxc)s) RETURNING 1) "
            f"SELECT (SELECT count(*) FROM back), (SELECT count(*) FROM dead)")
        self.q_forget_consumers = (
            f"DELETE FROM {self.t_cons} c WHERE c.queue = %s AND c.beat_at < {NOW} - %s "
            f"AND NOT EXISTS (SELECT 1 FROM {t} m WHERE m.owner = c.owner)")

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(f'LISTEN "{self.channel}"')

    # --- publishing -----------------------------------------------------------------------------
    def publish(self, message: Outgoing) -> None:
        eta = message.eta or 0.0
        delayed = eta > time.time()
        args: tuple[Any, ...] = (self.queue, message.id, message.body, message.priority, eta)
        if delayed:
            sql, args = self.q_insert_delayed, args
        else:
            sql, args = self.q_insert, (*args, self.channel)
        self._pub.run_retrying(lambda c: c.execute(sql, args), self.publish_timeout, f"publishing to {self.queue!r}")

    def publish_many(self, messages: Sequence[Outgoing]) -> None:
        for i in range(0, len(messages), _BATCH):
            chunk = messages[i:i + _BATCH]
            args = (self.queue, [m.id for m in chunk], [m.body for m in chunk], [m.priority for m in chunk],
                    [m.eta or 0.0 for m in chunk], self.channel)
            self._pub.run_retrying(lambda c, a=args: c.execute(self.q_insert_many, a), self.publish_timeout,  # type: ignore[misc]
                                   f"publishing {len(chunk)} messages to {self.queue!r}")

    # --- consuming ------------------------------------------------------------------------------
    def _claim(self, n: int, acks: list[Any]) -> list[Delivery]:
        try:
            rows = self._fetch.run(lambda c: self._claim_rows(c, n, acks), False)
        except BrokerUnavailable:
            # A connection that died while idle (server restart, cut): one more try on a new one. The
            # failed claim may have committed: the retry also delivers rows we own but do not know.
            self._suspect = True
            rows = self._fetch.run(lambda c: self._claim_rows(c, n, acks), False)
        if len(rows) > 1:
            rows.sort(key=lambda r: (-r[4], r[0]))
        return [Delivery(r[1], bytes(r[2]), r[0], r[3]) for r in rows]

    def _claim_rows(self, conn: psycopg.Connection[Any], n: int, acks: list[int]) -> list[Any]:
        with conn.cursor(binary=True) as cur:
            cur.execute(self.q_claim, {"acks": acks, "owner": self.owner, "q": self.queue, "n": n})
            rows = cur.fetchall()
            if rows:
                # Notifications read during claims are kept by psycopg until notifies() runs; a busy consumer
                # never waits, so drop them here (the next fetch claims before it waits anyway).
                backlog = getattr(conn, "_notifies_backlog", None)
                if backlog:
                    backlog.clear()
            if self._suspect:  # rows a lost reply claimed for us: deliver them now
                cur.execute(f"SELECT seq, id, body, deliveries, priority FROM {self.t_msg} "
                            f"WHERE owner = %s AND NOT (seq = ANY(%s))", (self.owner, [*self._held, *(r[0] for r in rows)]))
                rows = self._with_lost(rows, cur.fetchall())
        return rows

    def _idle_wait(self, timeout: float) -> None:
        # Sleep until a publish (or the reaper) notifies this queue's channel, or the timeout passes.
        self._fetch.run(lambda c: self._wait_notify(c, timeout))

    def _notify(self) -> None:
        self._maint.run(lambda c: c.execute("SELECT pg_notify(%s, '')", (self.channel,)))

    @staticmethod
    def _wait_notify(conn: psycopg.Connection[Any], timeout: float) -> None:
        for _ in conn.notifies(timeout=timeout, stop_after=1):
            pass

    def _mark_running(self, seqs: list[Any]) -> None:
        self._pub.run_retrying(lambda c: c.execute(
            f"UPDATE {self.t_msg} SET running = true WHERE seq = ANY(%s) AND owner = %s", (seqs, self.owner)),
            min(5.0, self.publish_timeout), "marking tasks running")

    def _delete_acked(self, seqs: list[Any]) -> None:
        # the heartbeat thread's connection; after close() (the heartbeat thread stopped) the publisher's
        link = self._pub if self._closed.is_set() else self._maint
        link.run(lambda c: c.execute(self.q_ack, (seqs, self.owner)))

    def nack(self, delivery: Delivery, requeue: bool = True, delay: float = 0.0) -> None:
        seq = delivery.tag
        if not requeue:
            self._pub.run_retrying(lambda c: c.execute(self.q_ack, ([seq], self.owner)), self.publish_timeout, "nack")
        else:
            self._pub.run_retrying(lambda c: c.execute(
                f"WITH u AS (UPDATE {self.t_msg} SET owner = NULL, running = false, eta = CASE WHEN %s > 0 THEN {NOW} + %s "
                f"ELSE eta END WHERE seq = %s AND owner = %s) SELECT pg_notify(%s, '')",
                (delay, delay, seq, self.owner, self.channel)), self.publish_timeout, "nack")
        self._forget(seq)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self._pub.run_retrying(lambda c: c.execute(
            f"WITH d AS (DELETE FROM {self.t_msg} WHERE seq = %s AND owner = %s RETURNING queue, id, body) "
            f"INSERT INTO {self.t_dead} (queue, id, body, reason, failed_at) SELECT queue, id, body, %s, {NOW} FROM d",
            (delivery.tag, self.owner, reason)), self.publish_timeout, "dead-lettering")
        self._forget(delivery.tag)

    # --- heartbeat, ack flushing and the reaper ---------------------------------------------------
    def _beat(self) -> None:
        self._maint.run(lambda c: c.execute(self.q_beat, (self.owner, self.queue)))

    def _reap(self) -> tuple[int, int]:
        row = self._maint.run(lambda c: c.execute(
            self.q_reap, {"q": self.queue, "dead_after": self.dead_after, "maxc": self.max_crashes}).fetchone())
        self._maint.run(lambda c: c.execute(self.q_forget_consumers, (self.queue, self.dead_after)))
        back, dead = row if row is not None else (0, 0)
        return int(back), int(dead)

    # --- dead letters ------------------------------------------------------------------------------
    def dead_letters(self, limit: int = 100) -> list[DeadLetterRecord]:
        rows = self._pub.run(lambda c: c.execute(
            f"SELECT seq, id, body, reason, failed_at FROM {self.t_dead} WHERE queue = %s ORDER BY seq LIMIT %s",
            (self.queue, limit)).fetchall())
        return [DeadLetterRecord(r[1], bytes(r[2]), r[3], r[4], r[0]) for r in rows]

    def replay_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        where = "queue = %s"
        args: list[Any] = [self.queue]
        if ids is not None:
            where += " AND id = ANY(%s)"
            args.append(list(ids))
        sql = (f"WITH d AS (DELETE FROM {self.t_dead} WHERE {where} RETURNING seq, queue, id, body), "
               f"i AS (INSERT INTO {self.t_msg} (queue, id, body) SELECT queue, id, body FROM d ORDER BY seq "
               f"RETURNING 1), n AS (SELECT pg_notify(%s, '')) SELECT count(*) FROM i, n")
        row = self._pub.run(lambda c: c.execute(sql, (*args, self.channel)).fetchone())
        return int(row[0]) if row else 0

    def purge_dead_letters(self) -> int:
        return self._pub.run(lambda c: c.execute(f"DELETE FROM {self.t_dead} WHERE queue = %s",
                                                 (self.queue,)).rowcount)

    # --- inspection and lifecycle -------------------------------------------------------------------
    def count(self) -> int:
        row = self._pub.run(lambda c: c.execute(
            f"SELECT count(*) FROM {self.t_msg} WHERE queue = %s AND owner IS NULL", (self.queue,)).fetchone())
        return int(row[0]) if row else 0

    def in_flight(self) -> int:
        row = self._pub.run(lambda c: c.execute(
            f"SELECT count(*) FROM {self.t_msg} WHERE queue = %s AND owner IS NOT NULL", (self.queue,)).fetchone())
        return int(row[0]) if row else 0

    def purge(self) -> int:
        return self._pub.run(lambda c: c.execute(
            f"DELETE FROM {self.t_msg} WHERE queue = %s AND owner IS NULL", (self.queue,)).rowcount)

    def cut_connections(self) -> int:
        """Terminate this broker's server connections (tests of reconnection); return how many were cut."""
        pids = [p for p in (link.backend_pid() for link in (self._fetch, self._maint, self._pub)) if p is not None]
        if not pids:
            return 0
        assert self.url is not None
        with psycopg.connect(self.url, autocommit=True) as c:
            rows = c.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,)).fetchall()
        return sum(1 for r in rows if r[0])

    def _release_all(self) -> int:
        n = self._pub.run(lambda c: c.execute(
            f"WITH u AS (UPDATE {self.t_msg} SET owner = NULL WHERE owner = %s RETURNING 1), "
            f"d AS (DELETE FROM {self.t_cons} WHERE owner = %s), n AS (SELECT pg_notify(%s, '')) "
            f"SELECT count(*) FROM u, n", (self.owner, self.owner, self.channel)).fetchone())
        return int(n[0]) if n else 0

    def _close_connections(self) -> None:
        for link in (self._fetch, self._maint, self._pub):
            link.close()

    def describe(self) -> dict[str, Any]:
        return {"broker": self.name, "queue": self.queue, "url": mask_url(self.url), "schema": self.schema}
