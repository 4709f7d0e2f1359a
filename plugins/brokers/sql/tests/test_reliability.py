"""Delivery guarantees of the sql broker beyond the contract, on MariaDB (and PostgreSQL where cheap): a
consumer process killed with messages in flight, a live long task, a crash loop, competing consumer
processes with both claim modes, cut connections and a claim whose reply was lost."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from boostkernel.broker import Outgoing
from boostkernel.message import Envelope
from boostkernel.testing import wait_until

FAST = {"heartbeat_interval": 0.2, "dead_after": 1.0, "reap_interval": 0.2}

_CHILD = """
import os, sys
from boostkernel_sql.broker import SqlBroker
b = SqlBroker(sys.argv[2], sys.argv[1], None, table_prefix=sys.argv[3], heartbeat_interval=0.2, dead_after=1.0,
              reap_interval=0.2)
got = []
while not got:
    got = b.fetch(10, 1.0)
os._exit(137)
"""


def _msg(i: int, priority: int = 0) -> Outgoing:
    env = Envelope("q", [i])
    return Outgoing(env.id, env.encode(), priority)


@pytest.fixture(params=[pytest.param("mysql", marks=pytest.mark.service("mysql")),
                        pytest.param("postgres", marks=pytest.mark.service("postgres"))])
def db(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("mysql_db" if request.param == "mysql" else "pg_db"))


@pytest.fixture
def make(table_prefix: str) -> Iterator[Any]:
    from boostkernel_sql.broker import SqlBroker

    made: list[SqlBroker] = []

    def mk(url: str, queue: str, **options: Any) -> SqlBroker:
        b = SqlBroker(queue, url, None, table_prefix=table_prefix, **{**FAST, **options})
        made.append(b)
        return b

    yield mk
    for b in made:
        b.close()


def _kill_connections_to_test_db() -> int:
    """KILL every server connection using the test database (only this test session uses it)."""
    from urllib.parse import urlparse

    import pymysql

    from boostkernel.testing.helpers import service_url

    from .conftest import MYSQL_DB

    u = urlparse(service_url("mysql"))
    c = pymysql.connect(host=u.hostname or "127.0.0.1", port=u.port or 3306, user=u.username or "root",
                        password=u.password or "", autocommit=True)
    try:
        with c.cursor() as cur:
            cur.execute("SELECT id FROM information_schema.processlist WHERE db = %s AND id <> CONNECTION_ID()",
                        (MYSQL_DB,))
            ids = [r[0] for r in cur.fetchall()]
            for i in ids:
                cur.execute(f"KILL CONNECTION {int(i)}")
        return len(ids)
    finally:
        c.close()


def _crash_once(url: str, queue: str, prefix: str) -> None:
    p = subprocess.run([sys.executable, "-c", _CHILD, url, queue, prefix], timeout=60)
    assert p.returncode == 137


def test_killed_consumers_messages_come_back(make: Any, db: str, table_prefix: str) -> None:
    q = f"rq_{uuid.uuid4().hex[:8]}"
    b = make(db, q)
    msgs = [_msg(i) for i in range(5)]
    b.publish_many(msgs)
    _crash_once(db, q, table_prefix)
    assert b.count() == 0 and b.in_flight() == 5
    got: list[Any] = []
    deadline = time.monotonic() + 10
    while len(got) < 5 and time.monotonic() < deadline:
        got += b.fetch(5, 0.5)
    assert sorted(d.id for d in got) == sorted(m.id for m in msgs)
    assert all(d.delivery_count == 2 for d in got)
    b.ack_many(got)
    assert wait_until(lambda: b.in_flight() == 0, 5)


@pytest.mark.service("mysql")
def test_long_task_of_live_consumer_is_not_redelivered(make: Any, mysql_db: str) -> None:
    q = f"lq_{uuid.uuid4().hex[:8]}"
    worker, other = make(mysql_db, q), make(mysql_db, q)
    worker.publish(_msg(1))
    d = worker.fetch(1, 2)[0]
    time.sleep(3.0)  # three dead_after periods: the heartbeat keeps it ours
    assert other.fetch(1, 0.5) == []
    worker.ack(d)
    worker.close()
    assert other.fetch(1, 0.5) == []
    assert other.in_flight() == 0 and other.count() == 0


@pytest.mark.service("mysql")
def test_crash_loop_goes_to_dead_letters(make: Any, mysql_db: str, table_prefix: str) -> None:
    q = f"pq_{uuid.uuid4().hex[:8]}"
    b = make(mysql_db, q, max_deliveries=3)
    poison = _msg(0)
    b.publish(poison)
    for _ in range(3):
        _crash_once(mysql_db, q, table_prefix)
        assert wait_until(lambda: (b.reap() or True) and b.in_flight() == 0, 10, 0.2)
    dead = b.dead_letters()
    assert [r.id for r in dead] == [poison.id]
    assert dead[0].reason.startswith("crash-loop: its worker died 3 time(s)")
    assert b.count() == 0


@pytest.mark.service("mysql")
@pytest.mark.parametrize("claim", ["skip_locked", "optimistic"])
def test_competing_consumer_processes_share_without_duplicates(mysql_db: str, table_prefix: str, claim: str,
                                                               tmp_path: Any) -> None:
    from boostkernel_sql.broker import SqlBroker

    q = f"cc_{uuid.uuid4().hex[:8]}"
    n = 300
    b = SqlBroker(q, mysql_db, None, table_prefix=table_prefix, claim=claim)
    b.publish_many([_msg(i) for i in range(n)])
    script = tmp_path / "consume.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        from boostkernel_sql.broker import SqlBroker
        b = SqlBroker({q!r}, {mysql_db!r}, None, table_prefix={table_prefix!r}, claim={claim!r})
        idle = time.monotonic()
        while time.monotonic() - idle < 1.5:
            got = b.fetch(5, 0.3)
            for d in got:
                print(d.id, flush=True)
            if got:
                b.ack_many(got)
                idle = time.monotonic()
        b.close()
    """))
    procs = [subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0]
    ids = [i for out in outs for i in out]
    assert len(ids) == n and len(set(ids)) == n, f"{len(ids)} deliveries of {len(set(ids))} messages"
    assert sum(1 for out in outs if out) >= 2, "the consumers competed"
    assert b.count() == 0 and b.in_flight() == 0
    b.close()


@pytest.mark.service("mysql")
def test_reconnects_after_its_connections_are_killed(make: Any, mysql_db: str) -> None:
    q = f"kq_{uuid.uuid4().hex[:8]}"
    b = make(mysql_db, q)
    b.publish(_msg(1))
    d = b.fetch(1, 2)[0]
    b.ack(d)
    assert wait_until(lambda: b.in_flight() == 0, 5)
    assert _kill_connections_to_test_db() >= 1
    b.publish(_msg(2))  # pre-ping replaces the dead pooled connection
    got: list[Any] = []
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        try:
            got = b.fetch(1, 0.5)
        except ConnectionError:
            time.sleep(0.1)  # what the consume loop does
    assert len(got) == 1
    b.ack(got[0])
    assert wait_until(lambda: b.in_flight() == 0, 5), "acks flow again after the cut"


@pytest.mark.service("mysql")
def test_claim_whose_reply_was_lost_is_delivered_by_the_next_fetch(make: Any, mysql_db: str) -> None:
    import sqlalchemy as sa

    q = f"lr_{uuid.uuid4().hex[:8]}"
    b = make(mysql_db, q)
    assert b.fetch(1, 0.1) == []  # the consumer is registered and its heartbeat runs
    b.publish(_msg(1))
    real_tx = b._tx

    def commit_then_die(fn: Any) -> Any:
        real_tx(fn)
        raise sa.exc.OperationalError("COMMIT", {}, Exception("connection lost (simulated after commit)"))

    b._tx = commit_then_die
    with pytest.raises(sa.exc.OperationalError):
        b.fetch(1, 1)
    b._tx = real_tx
    assert b.in_flight() == 1 and b.count() == 0
    got = b.fetch(1, 1)
    assert len(got) == 1
    b.ack(got[0])
    assert wait_until(lambda: b.in_flight() == 0, 5)
