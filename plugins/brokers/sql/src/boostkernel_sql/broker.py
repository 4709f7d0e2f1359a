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

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from boostkernel.broker import Broker, BrokerCapabilities, DeadLetterRecord, Delivery, Outgoing
from boostkernel.errors import BrokerUnavailable, ConfigError
from boostkernel.logs import mask, mask_url, queue_logger

from ._db import (
    GroupCommit,
    Tables,
    backoff_delays,
    consumer_id,
    engine_for,
    is_transient,
    now_expr,
    skip_locked_supported,
)

T = TypeVar("T")
_wakeups: dict[str, threading.Condition] = {}


class SqlBroker(Broker):
    name = "sql"
    capabilities = BrokerCapabilities(
        ack=True, requeue=True, priority=True, delay=True, durable=True, count=True, purge=True,
        batch_publish=True, dead_letter=True, cross_process=True,
    )
    default_url = None

    def __init__(self, queue: str, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(queue, url, params, **options)
        o = self.options
        if self.url is None or "://" not in self.url:
            raise ConfigError(f"the sql broker needs a SQLAlchemy URL such as mysql+pymysql://user:pw@host/db "
                              f"(got {self.url!r})")
        if len(queue) > 190:
            raise ConfigError(f"queue name {queue[:40]!r}… is longer than 190 characters")
        self.heartbeat_interval = float(o.get("heartbeat_interval", 2.0))
        self.dead_after = float(o.get("dead_after", 10.0))
        self.reap_interval = float(o.get("reap_interval", 2.0))
        self.ack_flush_interval = float(o.get("ack_flush_interval", 0.02))
        self.idle_poll = float(o.get("idle_poll", 0.5))
        self.publish_timeout = float(o.get("publish_timeout", 30.0))
        self.max_crashes = int(params.max_deliveries if params is not None else o.get("max_deliveries", 3))
        if self.dead_after <= self.heartbeat_interval * 2:
            raise ConfigError(f"dead_after ({self.dead_after}s) must be more than twice heartbeat_interval "
                              f"({self.heartbeat_interval}s), or live workers would be declared dead")
        self.engine = engine_for(self.url, o)
        self.tables = Tables.get(self.engine, str(o.get("table_prefix", "bk_")))
        self.claim_mode = str(o.get("claim", "auto"))
        if self.claim_mode == "auto":
            self.claim_mode = "skip_locked" if skip_locked_supported(self.engine) else "optimistic"
        if self.claim_mode not in ("skip_locked", "optimistic"):
            raise ConfigError(f"broker option claim={self.claim_mode!r}: use 'auto', 'skip_locked' or 'optimistic'")
        self.owner = consumer_id()
        self.log = queue_logger(queue)
        self._now = now_expr(self.engine)
        self._wake = _wakeups.setdefault(f"{self.url}|{self.tables.prefix}|{queue}", threading.Condition())
        self._acks: list[int] = []
        self._acks_lock = threading.Lock()
        self._ack_wake = threading.Event()
        self._held: set[int] = set()
        self._suspect = False
        self._hb_thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._starts = GroupCommit(self._mark_running, f"marking tasks of {queue!r} as running")

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
        deadline = time.monotonic() + self.publish_timeout
        nxt = backoff_delays()
        while True:
            try:
                return self._tx(fn)
            except BrokerUnavailable as exc:
                delay = nxt()
                if time.monotonic() + delay > deadline:
                    raise
                self.log.warning("%s failed (%s); retrying in %.2fs", what, exc, delay)
                time.sleep(delay)

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

    def _notify(self) -> None:
        with self._wake:
            self._wake.notify_all()

    # --- consuming ------------------------------------------------------------------------------
    def _claim(self, conn: Connection, n: int, acks: list[int]) -> list[Any]:
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
            lost = list(conn.execute(q))
            if lost:
                self.log.warning("queue %r: delivering %d message(s) claimed by a fetch whose reply was lost",
                                 self.queue, len(lost))
            rows += lost
        return rows

    def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        if self._hb_thread is None:
            self._start()
        deadline = time.monotonic() + timeout
        pause = 0.005
        while True:
            with self._acks_lock:
                acks, self._acks = self._acks, []
            try:
                rows = self._tx(lambda c, a=acks: self._claim(c, max_messages, a))  # type: ignore[misc]
            except BaseException:
                with self._acks_lock:
                    self._acks[:0] = acks
                self._suspect = True
                raise
            self._suspect = False
            self._settled(acks)
            if rows:
                if len(rows) > 1:
                    rows.sort(key=lambda r: (-r[4], r[0]))
                self._held.update(r[0] for r in rows)
                return [Delivery(r[1], bytes(r[2]), r[0], r[3]) for r in rows]
            left = deadline - time.monotonic()
            if left <= 0 or self._closed.is_set():
                return []
            with self._wake:
                self._wake.wait(min(pause, left))
            pause = min(pause * 2, self.idle_poll)

    def started(self, delivery: Delivery) -> None:
        """Mark the row running before the task runs (batched with other threads' marks): if this worker
        dies now, the reaper charges the crash to this message and not to the ones only prefetched."""
        self._starts.add(delivery.tag)

    def _mark_running(self, seqs: list[int]) -> None:
        m = self.tables.messages
        self._tx(lambda c: c.execute(m.update().where(m.c.seq.in_(seqs), m.c.owner == self.owner)
                                     .values(running=True)))

    def _settled(self, seqs: Iterable[int]) -> None:
        held = self._held
        for s in seqs:
            held.discard(s)

    def ack(self, delivery: Delivery) -> None:
        if self._closed.is_set():
            return  # close() gave it back to the queue: it runs again (at-least-once)
        with self._acks_lock:
            self._acks.append(delivery.tag)
        self._ack_wake.set()

    def ack_many(self, deliveries: Iterable[Delivery]) -> None:
        if self._closed.is_set():
            return
        with self._acks_lock:
            self._acks.extend(d.tag for d in deliveries)
        self._ack_wake.set()

    def flush_acks(self) -> None:
        with self._acks_lock:
            acks, self._acks = self._acks, []
        if not acks:
            return
        m = self.tables.messages
        try:
            self._tx(lambda c: c.execute(m.delete().where(m.c.seq.in_(acks), m.c.owner == self.owner)))
        except BaseException:
            with self._acks_lock:
                self._acks[:0] = acks
            raise
        self._settled(acks)

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
        self._held.discard(seq)

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
        self._held.discard(delivery.tag)

    # --- heartbeat, ack flushing and the reaper ---------------------------------------------------
    def _beat(self, c: Connection) -> None:
        cons = self.tables.consumers
        now = self._now_value()
        if not c.execute(cons.update().where(cons.c.owner == self.owner).values(beat_at=now)).rowcount:
            c.execute(cons.insert().values(owner=self.owner, queue=self.queue, beat_at=now))

    def _start(self) -> None:
        self._tx_retrying(self._beat, "registering the consumer")
        self._hb_thread = threading.Thread(target=self._heartbeat_loop, daemon=True,
                                           name=f"boostkernel-sql-heartbeat-{self.queue}")
        self._hb_thread.start()

    def _heartbeat_loop(self) -> None:
        now = time.monotonic()
        next_beat, next_reap = now + self.heartbeat_interval, now
        while not self._closed.is_set():
            now = time.monotonic()
            if self._ack_wake.wait(max(0.0, min(next_beat, next_reap) - now)):
                self._ack_wake.clear()
                if self._closed.wait(self.ack_flush_interval):
                    return
            if self._closed.is_set():
                return
            try:
                self.flush_acks()
                now = time.monotonic()
                if now >= next_beat:
                    self._tx(self._beat)
                    next_beat = now + self.heartbeat_interval
                if now >= next_reap:
                    self.reap()
                    next_reap = now + self.reap_interval
            except (BrokerUnavailable, sa.exc.SQLAlchemyError) as exc:
                if self._closed.is_set():
                    return
                self.log.warning("sql heartbeat of queue %r failed: %s", self.queue, exc)
                self._closed.wait(min(1.0, self.heartbeat_interval))

    def reap(self) -> int:
        """Return messages of dead consumers to the queue; dead-letter crash loops. Returns how many came back."""
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
                                        "reason": f"crash-loop: its worker died {r[3] + 1} time(s) while running it"}
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

        back, dead = self._tx(tx)
        if back or dead:
            self.log.warning("queue %r: returned %d message(s) of dead workers%s", self.queue, back,
                             f", {dead} crash-looping message(s) to the dead-letter queue" if dead else "")
        if back:
            self._notify()
        return back

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

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._ack_wake.set()
        if self._hb_thread is None:
            return
        self._hb_thread.join(10)
        m, cons = self.tables.messages, self.tables.consumers
        try:
            self.flush_acks()

            def tx(c: Connection) -> int:
                n = c.execute(m.update().where(m.c.owner == self.owner).values(owner=None, running=False)).rowcount
                c.execute(cons.delete().where(cons.c.owner == self.owner))
                return int(n)

            n = self._tx(tx)
            if n:
                self.log.info("queue %r: returned %d unacked message(s) on close", self.queue, n)
                self._notify()
        except (BrokerUnavailable, sa.exc.SQLAlchemyError) as exc:
            self.log.warning("could not return unacked messages on close (they come back once this consumer's "
                             "heartbeat is %ss old): %s", self.dead_after, exc)

    def describe(self) -> dict[str, Any]:
        return {"broker": self.name, "queue": self.queue, "url": mask_url(self.url), "claim": self.claim_mode,
                "tables": self.tables.prefix + "*"}
