"""kill -9 chaos on the ``postgres`` broker at its default heartbeat settings (``ChaosContract``): nothing is
lost, and each killed worker's messages are back in the queue within the declared bound (15 s; dead_after
10 s + reap_interval 2 s).

1,000 tasks of 50-200 ms on one worker process with 20 threads; the worker is SIGKILLed every 1.5 s six
times and restarted at once, then the last worker drains the queue. Every execution is written by the task
into a SQLite ledger outside PostgreSQL. lost must be 0; duplicates are printed; no row is left in flight.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from boostkernel.testing.chaos import ChaosContract
from boostkernel.testing.helpers import service_url

pytestmark = [pytest.mark.service("postgres"), pytest.mark.timeout(240)]


class TestPostgresChaos(ChaosContract):
    chaos_tasks = 1000
    chaos_kills = 6
    chaos_workers = 20
    chaos_recovery_bound = 15.0

    @pytest.fixture
    def chaos_boost_options(self) -> Iterator[dict[str, Any]]:
        import psycopg

        url, schema = service_url("postgres"), f"bk_chaos_{uuid.uuid4().hex[:8]}"
        yield {"broker": "postgres", "broker_url": url, "broker_options": {"schema": schema}}
        with psycopg.connect(url, autocommit=True) as db:
            db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    def chaos_held_by(self, broker: Any, pid: int) -> int:
        row = broker._pub.run(lambda c: c.execute(f"SELECT count(*) FROM {broker.t_msg} WHERE owner LIKE %s",
                                                  (f"{socket.gethostname()}:{pid}:%",)).fetchone())
        return int(row[0]) if row else 0
