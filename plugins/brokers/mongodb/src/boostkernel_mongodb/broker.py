"""The MongoDB broker: at-least-once queues in a collection, with the same design as the SQL brokers.

**Not tested against a MongoDB server**: none can run on the machines that build boostkernel (see the
README). The design follows the PostgreSQL/SQL brokers, which pass the delivery contract:

* **Claim**: ``find_one_and_update({queue, owner: null, eta <= now}, {$set: {owner: me, running: false},
  $inc: {deliveries: 1}}, sort=[priority desc, _id])``, up to N times per fetch. Each call atomically
  selects and records the document as in flight; competing consumers never get the same one.
* **Heartbeats**: a thread per consumer upserts ``{_id: me, queue, beat_at}`` in ``bk_consumers`` every
  ``heartbeat_interval``; the reaper (same thread, every ``reap_interval``, on every live consumer)
  returns documents whose owner's heartbeat is older than ``dead_after`` to the queue. Only documents
  that were running (``Broker.started``) are charged a crash; at ``max_deliveries`` crashes a document
  goes to ``bk_dead`` (``crash-loop``). Each step filters on the old owner, so concurrent reapers count a
  crash once.
* Priority, native delay (``eta``), ``insert_many`` batches, acks batched into one ``delete_many``.
* No notifications without a replica set: idle consumers poll with backoff up to ``idle_poll``.
* Times are the hosts' clocks (keep them in sync with NTP; ``dead_after`` tolerates seconds of skew).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

from boostkernel.broker import DeadLetterRecord, Delivery, Outgoing
from boostkernel.errors import BrokerUnavailable
from boostkernel.leasing import LeasedBroker, crash_loop_reason
from boostkernel.logs import mask, mask_url

from ._common import DEFAULT_URL, database_name, validate_url

try:
    import pymongo
    from bson import Binary
    from pymongo.errors import ConnectionFailure, PyMongoError
except ImportError as exc:  # pragma: no cover - exercised only without the dependency
    raise ImportError(f"the MongoDB broker of boostkernel needs pymongo ({exc}). Install it with: "
                      'pip install "boostkernel[mongodb]"  (or: pip install pymongo)') from exc

T = TypeVar("T")
_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def _client(url: str, options: dict[str, Any]) -> Any:
    with _clients_lock:
        c = _clients.get(url)
        if c is None:
            c = _clients[url] = pymongo.MongoClient(
                url, connectTimeoutMS=int(float(options.get("connect_timeout", 5)) * 1000),
                socketTimeoutMS=int(float(options.get("socket_timeout", 30)) * 1000),
                serverSelectionTimeoutMS=int(float(options.get("server_selection_timeout", 10)) * 1000),
                appname="boostkernel", connect=False)
        return c


class MongoBroker(LeasedBroker):
    name = "mongodb"
    default_url = DEFAULT_URL
    connection_errors: ClassVar[tuple[type[BaseException], ...]] = (PyMongoError,)

    def __init__(self, queue: str, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(queue, validate_url(url or DEFAULT_URL), params, **options)
        o = self.options
        assert self.url is not None
        self.database = database_name(self.url, o.get("database"))
        self.prefix = str(o.get("collection_prefix", "bk_"))
        db = _client(self.url, o)[self.database]  # no connection yet: pymongo connects on first use
        p = self.prefix
        self.msgs, self.cons, self.dead = db[p + "messages"], db[p + "consumers"], db[p + "dead"]
        self._indexes = False

    def _wakeup_key(self) -> str:
        return f"{self.url}|{self.database}|{self.prefix}|{self.queue}"

    # --- plumbing ---------------------------------------------------------------------------------
    def _op(self, fn: Callable[[], T]) -> T:
        if not self._indexes:
            self._ensure_indexes()
        try:
            return fn()
        except ConnectionFailure as exc:
            raise BrokerUnavailable(f"MongoDB at {mask_url(self.url)}: {mask(str(exc))}") from exc

    def _op_retrying(self, fn: Callable[[], T], what: str) -> T:
        return self.retrying(lambda: self._op(fn), what)

    def _ensure_indexes(self) -> None:
        try:
            self.msgs.create_index([("queue", 1), ("owner", 1), ("priority", -1), ("_id", 1)], name="bk_ready")
            self.msgs.create_index([("owner", 1)], name="bk_owner", sparse=True)
            self.cons.create_index([("queue", 1)], name="bk_queue")
            self.dead.create_index([("queue", 1), ("_id", 1)], name="bk_dead_queue")
        except ConnectionFailure as exc:
            raise BrokerUnavailable(f"MongoDB at {mask_url(self.url)}: {mask(str(exc))}") from exc
        self._indexes = True

    # --- publishing -----------------------------------------------------------------------------
    def _doc(self, m: Outgoing) -> dict[str, Any]:
        return {"queue": self.queue, "id": m.id, "body": Binary(m.body), "priority": m.priority,
                "eta": m.eta or 0.0, "owner": None, "running": False, "deliveries": 0, "crashes": 0}

    def publish(self, message: Outgoing) -> None:
        doc = self._doc(message)
        self._op_retrying(lambda: self.msgs.insert_one(doc), f"publishing to {self.queue!r}")
        self._notify()

    def publish_many(self, messages: Sequence[Outgoing]) -> None:
        for i in range(0, len(messages), 5000):
            docs = [self._doc(m) for m in messages[i:i + 5000]]
            # a retried batch may insert part of it twice: duplicates, never loss (at-least-once)
            self._op_retrying(lambda d=docs: self.msgs.insert_many(d, ordered=False),  # type: ignore[misc]
                              f"publishing {len(docs)} messages to {self.queue!r}")
        self._notify()

    # --- consuming ------------------------------------------------------------------------------
    def _claim(self, n: int, acks: list[Any]) -> list[Delivery]:
        docs = self._op(lambda: self._claim_docs(n, acks))
        return [Delivery(d["id"], bytes(d["body"]), d["_id"], int(d["deliveries"])) for d in docs]

    def _claim_docs(self, n: int, acks: list[Any]) -> list[dict[str, Any]]:
        if acks:
            self.msgs.delete_many({"_id": {"$in": acks}, "owner": self.owner})
        now = time.time()
        got: list[dict[str, Any]] = []
        for _ in range(n):
            doc = self.msgs.find_one_and_update(
                {"queue": self.queue, "owner": None, "eta": {"$lte": now}},
                {"$set": {"owner": self.owner, "running": False}, "$inc": {"deliveries": 1}},
                sort=[("priority", -1), ("_id", 1)], return_document=pymongo.ReturnDocument.AFTER)
            if doc is None:
                break
            got.append(doc)
        if self._suspect:  # documents a claim whose reply was lost gave us
            known = [*self._held, *(d["_id"] for d in got)]
            got = self._with_lost(got, list(self.msgs.find({"owner": self.owner, "_id": {"$nin": known}})))
        return got

    def _mark_running(self, ids: list[Any]) -> None:
        self._op(lambda: self.msgs.update_many({"_id": {"$in": ids}, "owner": self.owner}, {"$set": {"running": True}}))

    def _delete_acked(self, ids: list[Any]) -> None:
        self._op(lambda: self.msgs.delete_many({"_id": {"$in": ids}, "owner": self.owner}))

    def nack(self, delivery: Delivery, requeue: bool = True, delay: float = 0.0) -> None:
        mine = {"_id": delivery.tag, "owner": self.owner}
        if not requeue:
            self._op_retrying(lambda: self.msgs.delete_one(mine), "nack")
        else:
            update: dict[str, Any] = {"owner": None, "running": False}
            if delay > 0:
                update["eta"] = time.time() + delay
            self._op_retrying(lambda: self.msgs.update_one(mine, {"$set": update}), "nack")
            self._notify()
        self._forget(delivery.tag)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        # Without multi-document transactions (a standalone server has none): write the dead letter first,
        # then delete the message if it is still ours; if it is not, take the dead letter back. A crash in
        # between leaves a duplicate dead letter, never a lost message.
        doc = {"queue": self.queue, "id": delivery.id, "body": Binary(delivery.body), "reason": reason,
               "failed_at": time.time()}

        def move() -> None:
            res = self.dead.insert_one(doc)
            if self.msgs.delete_one({"_id": delivery.tag, "owner": self.owner}).deleted_count == 0:
                self.dead.delete_one({"_id": res.inserted_id})

        self._op_retrying(move, "dead-lettering")
        self._forget(delivery.tag)

    # --- heartbeat, ack flushing and the reaper ---------------------------------------------------
    def _beat(self) -> None:
        self._op(lambda: self.cons.update_one({"_id": self.owner},
                                              {"$set": {"queue": self.queue, "beat_at": time.time()}}, upsert=True))

    def _reap(self) -> tuple[int, int]:
        def run() -> tuple[int, int]:
            owners = [o for o in self.msgs.distinct("owner", {"queue": self.queue, "owner": {"$ne": None}}) if o]
            if not owners:
                return 0, 0
            limit = time.time() - self.dead_after
            alive = {c["_id"] for c in self.cons.find({"_id": {"$in": owners}, "beat_at": {"$gt": limit}}, {"_id": 1})}
            back = doomed = 0
            for owner in (o for o in owners if o not in alive):
                # crash loops: take each doomed document from the dead owner first, so one reaper moves it
                for doc in self.msgs.find({"queue": self.queue, "owner": owner, "running": True,
                                           "crashes": {"$gte": self.max_crashes - 1}}):
                    mine = f"reaping:{self.owner}"
                    if self.msgs.update_one({"_id": doc["_id"], "owner": owner},
                                            {"$set": {"owner": mine}}).modified_count != 1:
                        continue
                    self.dead.insert_one({"queue": self.queue, "id": doc["id"], "body": doc["body"],
                                          "failed_at": time.time(), "reason": crash_loop_reason(doc["crashes"] + 1)})
                    self.msgs.delete_one({"_id": doc["_id"], "owner": mine})
                    doomed += 1
                back += self.msgs.update_many({"queue": self.queue, "owner": owner, "running": True},
                                              {"$set": {"owner": None, "running": False},
                                               "$inc": {"crashes": 1}}).modified_count
                back += self.msgs.update_many({"queue": self.queue, "owner": owner},
                                              {"$set": {"owner": None, "running": False}}).modified_count
                self.cons.delete_one({"_id": owner, "beat_at": {"$lte": limit}})
            return back, doomed

        return self._op(run)

    # --- dead letters ------------------------------------------------------------------------------
    def dead_letters(self, limit: int = 100) -> list[DeadLetterRecord]:
        docs = self._op(lambda: list(self.dead.find({"queue": self.queue}).sort("_id", 1).limit(limit)))
        return [DeadLetterRecord(d["id"], bytes(d["body"]), d["reason"], d["failed_at"], d["_id"]) for d in docs]

    def replay_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        def run() -> int:
            q: dict[str, Any] = {"queue": self.queue}
            if ids is not None:
                q["id"] = {"$in": list(ids)}
            n = 0
            for d in list(self.dead.find(q).sort("_id", 1)):
                # publish first, then delete: a crash in between replays it twice, never loses it
                self.msgs.insert_one({"queue": self.queue, "id": d["id"], "body": d["body"], "priority": 0,
                                      "eta": 0.0, "owner": None, "running": False, "deliveries": 0, "crashes": 0})
                self.dead.delete_one({"_id": d["_id"]})
                n += 1
            return n

        n = self._op(run)
        self._notify()
        return n

    def purge_dead_letters(self) -> int:
        return int(self._op(lambda: self.dead.delete_many({"queue": self.queue}).deleted_count))

    # --- inspection and lifecycle -------------------------------------------------------------------
    def count(self) -> int:
        return int(self._op(lambda: self.msgs.count_documents({"queue": self.queue, "owner": None})))

    def in_flight(self) -> int:
        return int(self._op(lambda: self.msgs.count_documents({"queue": self.queue, "owner": {"$ne": None}})))

    def purge(self) -> int:
        return int(self._op(lambda: self.msgs.delete_many({"queue": self.queue, "owner": None}).deleted_count))

    def _release_all(self) -> int:
        n = int(self._op(lambda: self.msgs.update_many({"owner": self.owner},
                                                       {"$set": {"owner": None, "running": False}}).modified_count))
        self._op(lambda: self.cons.delete_one({"_id": self.owner}))
        if n:
            self._notify()
        return n

    def describe(self) -> dict[str, Any]:
        return {"broker": self.name, "queue": self.queue, "url": mask_url(self.url), "database": self.database}
