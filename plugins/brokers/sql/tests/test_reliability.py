"""What the contract cannot provoke from outside: a claim whose commit reply was lost (on MariaDB).

(Crash redelivery, a live long task, crash loops, competing consumer processes in both claim modes, cut
connections and a server restart are in the contract suite, test_contract.py.)"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from boostkernel.broker import Outgoing
from boostkernel.message import Envelope
from boostkernel.testing import wait_until

FAST = {"heartbeat_interval": 0.2, "dead_after": 1.0, "reap_interval": 0.2}


def _msg(i: int, priority: int = 0) -> Outgoing:
    env = Envelope("q", [i])
    return Outgoing(env.id, env.encode(), priority)


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


def kill_connections_to_test_db() -> int:
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
