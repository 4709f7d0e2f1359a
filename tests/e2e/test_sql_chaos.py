"""kill -9 chaos on the ``sql`` broker on MariaDB (SQLAlchemy + PyMySQL, SKIP LOCKED claims) at its default
heartbeat settings (``ChaosContract``): nothing is lost, and each killed worker's messages are back in the
queue within the declared bound (15 s; dead_after 10 s + reap_interval 2 s).

1,000 tasks of 50-200 ms on one worker process with 20 threads; the worker is SIGKILLed every 1.5 s six
times and restarted at once, then the last worker drains the queue. Every execution is written by the task
into a SQLite ledger outside MariaDB. lost must be 0; duplicates are printed; no row is left in flight.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import pytest

from boostkernel.testing.chaos import ChaosContract
from boostkernel.testing.helpers import service_url

pytestmark = [pytest.mark.service("mysql"), pytest.mark.timeout(240)]
DB = "boostkernel_test"


class TestSqlChaosOnMariaDB(ChaosContract):
    chaos_tasks = 1000
    chaos_kills = 6
    chaos_workers = 20
    chaos_recovery_bound = 15.0

    @pytest.fixture
    def chaos_boost_options(self) -> Iterator[dict[str, Any]]:
        import pymysql

        u = urlparse(service_url("mysql"))
        auth = (u.username or "root") + (f":{u.password}" if u.password else "")
        url = f"mysql+pymysql://{auth}@{u.hostname or '127.0.0.1'}:{u.port or 3306}/{DB}"
        prefix = f"bkchaos{uuid.uuid4().hex[:8]}_"
        admin = pymysql.connect(host=u.hostname or "127.0.0.1", port=u.port or 3306, user=u.username or "root",
                                password=u.password or "", autocommit=True)
        try:
            with admin.cursor() as cur:
                cur.execute(f"CREATE DATABASE IF NOT EXISTS {DB}")
            yield {"broker": "sql", "broker_url": url, "broker_options": {"table_prefix": prefix}}
            with admin.cursor() as cur:
                for t in ("messages", "consumers", "dead"):
                    cur.execute(f"DROP TABLE IF EXISTS {DB}.{prefix}{t}")
        finally:
            admin.close()

    def chaos_held_by(self, broker: Any, pid: int) -> int:
        import sqlalchemy as sa

        m = broker.tables.messages
        query = sa.select(sa.func.count()).select_from(m).where(m.c.owner.like(f"{socket.gethostname()}:{pid}:%"))
        return int(broker._tx(lambda c: c.execute(query).scalar_one()))
