"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from boostkernel.testing.helpers import service_url

#: the queues of examples/frameworks/tasks.py
EXAMPLE_QUEUES = ("fw_example_add", "fw_example_flaky", "fw_example_fail", "fw_example_slow")


@pytest.fixture
def drop_example_rabbitmq_queues() -> Callable[[], None]:
    """A function that deletes the queues of examples/frameworks on the shared RabbitMQ (with celery's and
    dramatiq's ``.DQ``/``.XQ`` companions): celery and dramatiq declare the same queue names with different
    arguments, so a run on one after a run on the other starts clean only after this."""

    def drop() -> None:
        import pika

        conn = pika.BlockingConnection(pika.URLParameters(service_url("rabbitmq")))
        try:
            for q in EXAMPLE_QUEUES:
                for name in (q, f"{q}.DQ", f"{q}.XQ"):
                    ch = conn.channel()
                    ch.queue_delete(name)
                    ch.close()
        finally:
            conn.close()

    return drop


@pytest.fixture
def runs_ledger(tmp_path: Path) -> Path:
    """``tmp_path/ledger.db``: a SQLite file in WAL mode with an empty table ``runs (i, pid, delivery, t)``,
    kept outside the broker under test. A chaos test's workers insert a row per execution (committed before
    the task returns, so before its ack); the test reads them afterwards. Columns a worker does not write
    stay NULL."""
    path = tmp_path / "ledger.db"
    c = sqlite3.connect(path)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE runs (i INTEGER, pid INTEGER, delivery INTEGER, t REAL)")
    c.commit()
    c.close()
    return path
