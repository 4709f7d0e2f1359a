"""The SQL broker: at-least-once queues in ordinary tables of any SQLAlchemy 2 database.

* **Claim** is one transaction: ``SELECT … ORDER BY priority DESC, seq LIMIT n FOR UPDATE SKIP LOCKED``
  then ``UPDATE … SET owner = me`` on those rows, then ``COMMIT``. Until the commit the rows are locked and
  still in the queue; after it they are owned by this consumer: there is no moment at which a fetched
  message is recorded nowhere. Competing consumers skip each other's locked rows.
  Databases without ``SKIP LOCKED`` (SQLite, MySQL < 8, MariaDB < 10.6, SQL Server …) use the
  **optimistic** claim: select candidates without locking, ``UPDATE … SET owner = me WHERE seq IN (…) AND
  owner IS NULL`` (each row is taken by exactly one consumer, whichever updates it first), then read back
  the rows this consumer got. Just as safe; under heavy contention consumers get fewer rows per fetch.
* **Heartbeats** (a thread per consumer writes its row in ``bk_consumers``) and a **reaper** on every live
  consumer return the messages of consumers silent for ``dead_after`` seconds, counting a crash; a message
  whose consumer died ``max_deliveries`` times goes to the dead-letter table (``crash-loop``). Rows are
  locked (``FOR UPDATE``) before they are moved, so concurrent reapers count a crash once.
* Priority, native delay (``eta``, on the database's clock where the dialect has one), batched publish
  (``executemany``), batched acks (within ``ack_flush_interval``, or with the next claim).
* Waiting consumers poll with backoff up to ``idle_poll`` (0.5 s); publishes from the same process wake them
  at once. Connection errors: pooled connections are pre-pinged and replaced; fetches are retried by the
  consume loop with capped backoff, publishes for ``publish_timeout`` seconds; a claim whose commit reply
  was lost is recovered by the next claim.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from boostkernel.broker import DeadLetterRecord, Delivery, Outgoing
from boostkernel.errors import BrokerUnavailable, ConfigError
from boostkernel.leasing import LeasedBroker, crash_loop_reason
from boostkernel.logs import mask, mask_url

from ._db import Tables, engine_for, is_transient, now_expr, skip_locked_supported

T = TypeVar("T")


class SqlBroker(LeasedBroker):
    name = "sql"
    default_url = None
    connection_errors: ClassVar[tuple[type[BaseException], ...]] = (sa.exc.SQLAlchemyError,)

    def __init__(self, queue: str, url: str | None = None, params: Any = None, **options: Any) -> None:
        if url is None or "://" not in url:
            raise ConfigError(f"the sql broker needs a SQLAlchemy URL such as mysql+pymysql://user:pw@host/db "
                              f"(got {url!r})")
        if len(queue) > 190:
            raise ConfigError(f"queue name {queue[:40]!r}… is longer than 190 characters")
        super().__init__(queue, url, params, **options)
        o = self.options
        assert self.url is not None
        self.engine = engine_for(self.url, o)
        self.tables = Tables.get(self.engine, str(o.get("table_prefix", "bk_")))
        self.claim_mode = str(o.get("claim", "auto"))
        if self.claim_mode == "auto":
            self.claim_mode = "skip_locked" if skip_locked_supported(self.engine) else "optimistic"
        if self.claim_mode not in ("skip_locked", "optimistic"):
            raise ConfigError(f"broker option claim={self.claim_mode!r}: use 'auto', 'skip_locked' or 'optimistic'")
        self._now = now_expr(self.engine)

    def _wakeup_key(self) -> str:
        return f"{self.url}|{self.tables.prefix}|{self.queue}"

    # --- plumbing ---------------------------------------------------------------------------------
    def _tx(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` in one transaction; a deadlock or serialization failure is retried at once (it was
        rolled back); a lost connection raises ``BrokerUnavailable``."""
        for attempt in range(5):
            try:
                with self.engine.begin() as conn:
                    return fn(conn)
            except sa.exc.DBAPIError as exc:
                kind = is_transient(exc)
                if kind == "retry" and attempt < 4:
                    time.sleep(0.01 * (attempt + 1))
                    continue
                if kind in ("retry", "connection"):
                    raise BrokerUnavailable(f"{self.engine.dialect.name} at {mask_url(self.url)}: "
                                            f"{mask(str(exc.orig)).strip()}") from exc
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _tx_retrying(self, fn: Callable[[Connection], T], what: str) -> T:
        return self.retrying(lambda: self._tx(fn), what)

    def _now_value(self) -> Any:
        return self._now if self._now is not None else time.time()

    # --- publishing -----------------------------------------------------------------------------
    def _row(self, m: Outgoing) -> dict[str, Any]:
        return {"queue": self.queue, "id": m.id, "body": m.body, "priority": m.priority, "eta": m.eta or 0.0,
                "deliveries": 0, "crashes": 0}

    def publish(self, message: Outgoing) -> None:
        row = self._row(message)
        self._tx_retrying(lambda c: c.execute(self.tables.messages.insert(), row), f"publishing to {self.queue!r}")
        self._notify()

    def publish_many(self, messages: Sequence[Outgoing]) -> None:
        for i in range(0, len(messages), 2000):
            rows = [self._row(m) for m in messages[i:i + 2000]]
            self._tx_retrying(lambda c, r=rows: c.execute(self.tables.messages.insert(), r),  # type: ignore[misc]
                              f"publishing {len(rows)} messages to {self.queue!r}")
        self._notify()

    # --- consuming ------------------------------------------------------------------------------
    def _claim(self, n: int, acks: list[Any]) -> list[Delivery]:
        rows = self._tx(lambda c: self._claim_rows(c, n, acks))
        if len(rows) > 1:
            rows.sort(key=lambda r: (-r[4], r[0]))
        return [Delivery(r[1], bytes(r[2]), r[0], r[3]) for r in rows]

    def _claim_rows(self, conn: Connection, n: int, acks: list[int]) -> list[Any]:
        m = self.tables.messages
        if acks:
            conn.execute(m.delete().where(m.c.seq.in_(acks), m.c.owner == self.owner))
        cols = (m.c.seq, m.c.id, m.c.body, m.c.deliveries, m.c.priority)
        pick = (sa.select(m.c.seq).where(m.c.queue == self.queue, m.c.owner.is_(None), m.c.eta <= self._now_value())
                .order_by(m.c.priority.desc(), m.c.seq).limit(n))
        if self.claim_mode == "skip_locked":
            seqs = [r[0] for r in conn.execute(pick.with_for_update(skip_locked=True))]
            if seqs:
                conn.execute(m.update().where(m.c.seq.in_(seqs))
                             .values(owner=self.owner, running=False, deliveries=m.c.deliveries + 1))
        else:
            seqs = [r[0] for r in conn.execute(pick)]
            if seqs:  # whoever updates a row first owns it; the others' WHERE no longer matches
                conn.execute(m.update().where(m.c.seq.in_(seqs), m.c.owner.is_(None))
                             .values(owner=self.owner, running=False, deliveries=m.c.deliveries + 1))
        rows = list(conn.execute(sa.select(*cols).where(m.c.seq.in_(seqs), m.c.owner == self.owner))) if seqs else []
        if self._suspect:  # rows a claim whose reply was lost gave us: deliver them now
            known = [*self._held, *(r[0] for r in rows)]
            q = sa.select(*cols).where(m.c.owner == self.owner)
            if known:
                q = q.where(m.c.seq.not_in(known))
            rows = self._with_lost(rows, list(conn.execute(q)))
        return rows

    def _mark_running(self, seqs: list[Any]) -> None:
        m = self.tables.messages
        self._tx(lambda c: c.execute(m.update().where(m.c.seq.in_(seqs), m.c.owner == self.owner)
                                     .values(running=True)))

    def _delete_acked(self, seqs: list[Any]) -> None:
        m = self.tables.messages
        self._tx(lambda c: c.execute(m.delete().where(m.c.seq.in_(seqs), m.c.owner == self.owner)))

    def nack(self, delivery: Delivery, requeue: bool = True, delay: float = 0.0) -> None:
        m, seq = self.tables.messages, delivery.tag
        mine = (m.c.seq == seq) & (m.c.owner == self.owner)
        if not requeue:
            self._tx_retrying(lambda c: c.execute(m.delete().where(mine)), "nack")
        else:
            values: dict[str, Any] = {"owner": None, "running": False}
            if delay > 0:
                values["eta"] = (self._now + delay) if self._now is not None else time.time() + delay
            self._tx_retrying(lambda c: c.execute(m.update().where(mine).values(**values)), "nack")
            self._notify()
        self._forget(seq)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        m, d = self.tables.messages, self.tables.dead

        def tx(c: Connection) -> None:
            row = c.execute(sa.select(m.c.id, m.c.body).where(m.c.seq == delivery.tag, m.c.owner == self.owner)
                            .with_for_update()).first()
            if row is None:
                return  # no longer ours (reaped and redelivered): its new holder decides
            c.execute(d.insert(), {"queue": self.queue, "id": row[0], "body": row[1], "reason": reason[:2000],
                                   "failed_at": time.time()})
            c.execute(m.delete().where(m.c.seq == delivery.tag))

        self._tx_retrying(tx, "dead-lettering")
        self._forget(delivery.tag)

    # --- heartbeat, ack flushing and the reaper ---------------------------------------------------
    def _beat(self) -> None:
        cons = self.tables.consumers

        def tx(c: Connection) -> None:
            now = self._now_value()
            if not c.execute(cons.update().where(cons.c.owner == self.owner).values(beat_at=now)).rowcount:
                c.execute(cons.insert().values(owner=self.owner, queue=self.queue, beat_at=now))

        self._tx(tx)

    def _reap(self) -> tuple[int, int]:
        m, cons, d = self.tables.messages, self.tables.consumers, self.tables.dead
        limit = self._now - self.dead_after if self._now is not None else time.time() - self.dead_after

        def tx(c: Connection) -> tuple[int, int]:
            live = sa.select(cons.c.owner).where(cons.c.beat_at > limit)
            held = c.execute(sa.select(m.c.owner).where(m.c.queue == self.queue, m.c.owner.is_not(None)).distinct())
            dead_owners = [r[0] for r in held]
            if not dead_owners:
                return 0, 0
            alive = {r[0] for r in c.execute(live.where(cons.c.owner.in_(dead_owners)))}
            dead_owners = [o for o in dead_owners if o not in alive]
            if not dead_owners:
                return 0, 0
            lock = sa.select(m.c.seq, m.c.id, m.c.body, m.c.crashes, m.c.running).where(
                m.c.queue == self.queue, m.c.owner.in_(dead_owners))
            rows = list(c.execute(lock.with_for_update(skip_locked=self.claim_mode == "skip_locked")))
            # only a message that was running when its worker died is charged the crash
            doomed = [r for r in rows if r[4] and r[3] + 1 >= self.max_crashes]
            charged = [r[0] for r in rows if r[4] and r[3] + 1 < self.max_crashes]
            spared = [r[0] for r in rows if not r[4]]
            if doomed:
                t = time.time()
                c.execute(d.insert(), [{"queue": self.queue, "id": r[1], "body": r[2], "failed_at": t,
                                        "reason": crash_loop_reason(r[3] + 1)}
                                       for r in doomed])
                c.execute(m.delete().where(m.c.seq.in_([r[0] for r in doomed])))
            if charged:
                c.execute(m.update().where(m.c.seq.in_(charged), m.c.owner.in_(dead_owners))
                          .values(owner=None, running=False, crashes=m.c.crashes + 1))
            if spared:
                c.execute(m.update().where(m.c.seq.in_(spared), m.c.owner.in_(dead_owners)).values(owner=None))
            back = charged + spared
            c.execute(cons.delete().where(cons.c.owner.in_(dead_owners)))
            return len(back), len(doomed)

        return self._tx(tx)

    # --- dead letters ------------------------------------------------------------------------------
    def dead_letters(self, limit: int = 100) -> list[DeadLetterRecord]:
        d = self.tables.dead
        rows = self._tx(lambda c: list(c.execute(
            sa.select(d.c.seq, d.c.id, d.c.body, d.c.reason, d.c.failed_at).where(d.c.queue == self.queue)
            .order_by(d.c.seq).limit(limit))))
        return [DeadLetterRecord(r[1], bytes(r[2]), r[3], r[4], r[0]) for r in rows]

    def replay_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        m, d = self.tables.messages, self.tables.dead

        def tx(c: Connection) -> int:
            q = sa.select(d.c.seq, d.c.id, d.c.body).where(d.c.queue == self.queue).order_by(d.c.seq)
            if ids is not None:
                q = q.where(d.c.id.in_(list(ids)))
            rows = list(c.execute(q.with_for_update()))
            if not rows:
                return 0
            c.execute(m.insert(), [{"queue": self.queue, "id": r[1], "body": r[2], "priority": 0, "eta": 0.0,
                                    "deliveries": 0, "crashes": 0} for r in rows])
            c.execute(d.delete().where(d.c.seq.in_([r[0] for r in rows])))
            return len(rows)

        n = self._tx(tx)
        self._notify()
        return n

    def purge_dead_letters(self) -> int:
        d = self.tables.dead
        return int(self._tx(lambda c: c.execute(d.delete().where(d.c.queue == self.queue)).rowcount))

    # --- inspection and lifecycle -------------------------------------------------------------------
    def count(self) -> int:
        m = self.tables.messages
        return int(self._tx(lambda c: c.execute(sa.select(sa.func.count()).select_from(m).where(
            m.c.queue == self.queue, m.c.owner.is_(None))).scalar_one()))

    def in_flight(self) -> int:
        m = self.tables.messages
        return int(self._tx(lambda c: c.execute(sa.select(sa.func.count()).select_from(m).where(
            m.c.queue == self.queue, m.c.owner.is_not(None))).scalar_one()))

    def purge(self) -> int:
        m = self.tables.messages
        return int(self._tx(lambda c: c.execute(m.delete().where(m.c.queue == self.queue, m.c.owner.is_(None)))
                            .rowcount))

    def _release_all(self) -> int:
        m, cons = self.tables.messages, self.tables.consumers

        def tx(c: Connection) -> int:
            n = c.execute(m.update().where(m.c.owner == self.owner).values(owner=None, running=False)).rowcount
            c.execute(cons.delete().where(cons.c.owner == self.owner))
            return int(n)

        n = self._tx(tx)
        if n:
            self._notify()
        return n

    def describe(self) -> dict[str, Any]:
        return {"broker": self.name, "queue": self.queue, "url": mask_url(self.url), "claim": self.claim_mode,
                "tables": self.tables.prefix + "*"}
