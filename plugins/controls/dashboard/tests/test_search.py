"""Task-record search: a store's native ``search_results`` (indexed) answers exactly like the generic scan."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from boostkernel_dashboard import records
from boostkernel_dashboard.records import Query

from boostkernel.testing.helpers import service_reachable, service_url


def _records(n: int) -> list[dict[str, Any]]:
    rnd = random.Random(7)
    out = []
    for i in range(n):
        status = rnd.choice(["success", "success", "failure", "dead", "running"])
        rec: dict[str, Any] = {"task_id": str(uuid.UUID(int=rnd.getrandbits(128))), "queue": f"q{i % 3}",
                               "status": status, "args": [i, f"Word{rnd.randrange(40)}"],
                               "kwargs": {"user": f"u_{rnd.randrange(20)}%"}, "published_at": 1000.0 + i}
        if status == "failure":
            rec["error"] = {"type": "ValueError", "message": "word7 in the error, not the arguments"}
        out.append(rec)
    return out


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    kind = request.param
    if kind == "sqlite":
        from boostkernel_sqlite.store import SqliteStore

        s: Any = SqliteStore(f"sqlite:///{tmp_path}/store.db")
    else:
        if not service_reachable(kind):
            import os

            if os.environ.get("CI"):
                pytest.fail(f"{kind} is not reachable (CI is set)")
            pytest.skip(f"{kind} is not reachable")
        if kind == "postgres":
            from boostkernel_postgres.store import PostgresStore

            s = PostgresStore(service_url("postgres"), schema=f"t_search_{uuid.uuid4().hex[:8]}")
        else:
            from boostkernel_redis.store import RedisStore

            s = RedisStore(service_url("redis"), key_prefix=f"t_search_{uuid.uuid4().hex[:8]}")
    for r in _records(300):
        s.put_result(r["task_id"], r, 600.0)
    yield s
    if kind == "postgres":
        s._run(lambda c: c.execute(f'DROP SCHEMA "{s.schema}" CASCADE'))
    elif kind == "redis":
        for k in s.redis.scan_iter(match=s.prefix + "*", count=1000):
            s.redis.delete(k)
    s.close()


QUERIES = [Query(), Query(limit=7), Query(queue="q1"), Query(status="failure"), Query(queue="q2", status="dead"),
           Query(since=1100, until=1150), Query(queue="q0", since=1200), Query(text="word7"), Query(text="U_1%"),
           Query(text="nothing-like-this"), Query(queue="q1", text="word3", limit=5),
           # a prefix shared by many indexed words; a word every record has (a key); rare text (the trigram
           # table / word index first); rare text with filters and a time range
           Query(text="word"), Query(text="user"), Query(text="277"), Query(text="277", queue="q1"),
           Query(text="word1", status="dead", since=1050), Query(text="u_3%", queue="q2", until=1200),
           Query(text="_1%", queue="q0")]
#: Text found inside a word, not at its start: SQLite and PostgreSQL find it; Redis indexes words (see below).
INSIDE_WORDS = [Query(text="ord7"), Query(text="27"), Query(text="ord1", queue="q0")]


def test_native_search_matches_the_scan(store: Any) -> None:
    ids = [r["task_id"] for r in _records(300)]
    queries = [*QUERIES, Query(task_id=ids[5]), Query(task_id=ids[9][:6]), Query(task_id=ids[9][:1]),
               Query(task_id=ids[9][:1], queue="q1", status="success"), Query(task_id="zz")]
    if store.name != "redis":
        queries += INSIDE_WORDS
    for q in queries:
        native = [r["task_id"] for r in records.search([store], q)]
        scanned = [r["task_id"] for r in sorted(records._scan(store, q), key=records.record_time, reverse=True)[:q.limit]]
        assert native == scanned, q
    assert len(records.search([store], Query(queue="q1"))) == 100


def test_records_written_after_the_first_search_are_found(store: Any) -> None:
    """Stores that index lazily (the first search turns indexing on) keep up with later writes and with
    a record that changes status."""
    records.search([store], Query(limit=1))
    tid = str(uuid.uuid4())
    rec = {"task_id": tid, "queue": "q9", "status": "running", "args": ["late"], "kwargs": {}, "published_at": 5000.0}
    store.put_result(tid, rec, 600.0)
    assert [r["task_id"] for r in records.search([store], Query(status="running", queue="q9"))] == [tid]
    assert [r["status"] for r in records.search([store], Query(text="late"))] == ["running"]
    store.put_result(tid, {**rec, "status": "success", "result": 1}, 600.0)
    assert records.search([store], Query(status="running", queue="q9")) == []
    assert [r["status"] for r in records.search([store], Query(text="LATE"))] == ["success"]
    assert [r["task_id"] for r in records.search([store], Query(since=4999))] == [tid]


def test_redis_text_search_matches_word_starts(store: Any) -> None:
    """On Redis, text search goes through the word index: each word of the text must start a word of the
    arguments (and the whole text must be in them); text found only inside a word is not found."""
    if store.name != "redis":
        pytest.skip("the word index is Redis's")
    for q in INSIDE_WORDS:
        native = [r["task_id"] for r in records.search([store], q)]
        scanned = [r["task_id"] for r in sorted(records._scan(store, q), key=records.record_time, reverse=True)]
        assert scanned, q
        assert set(native) <= set(scanned), q
        assert len(native) < len(scanned[:q.limit]), q
    assert len(records.search([store], Query(text="ord7"))) == 0


def test_expired_records_leave_the_indexes(store: Any) -> None:
    """A record that expired is not found by any kind of search (and its stale index entries go)."""
    records.search([store], Query(limit=1))
    tid = "ffffffff-0000-4000-8000-" + uuid.uuid4().hex[:12]
    rec = {"task_id": tid, "queue": "qx", "status": "success", "args": ["ephemeral"], "kwargs": {},
           "published_at": 9000.0}
    store.put_result(tid, rec, 600.0)
    kinds = [Query(queue="qx"), Query(task_id=tid), Query(task_id=tid[:10]), Query(text="ephemeral"), Query()]
    for q in kinds:
        assert [r["task_id"] for r in records.search([store], q)][:1] == [tid], q
    store.delete(f"result:{tid}")
    for q in kinds:
        assert tid not in [r["task_id"] for r in records.search([store], q)], q
