"""mysql-binlog across kill -9: 1,000 rows inserted into a table become 1,000 executed tasks.

A private MariaDB with the row-based binary log (never the shared 3306 instance). The worker (8 threads,
tasks of 10-60 ms) consumes the inserts of ``shop.orders`` while the rows are being inserted, and is
SIGKILLed every 1.5 s and restarted; each restart takes over the log from the checkpoint. Every execution
is written by the task into a SQLite ledger outside MariaDB: every row must have run at least once;
duplicates (rows in flight, or settled after the last checkpoint write, at a kill) are printed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from boostkernel.testing import wait_until
from boostkernel.testing.chaos import Ledger, WorkerProcess, kill_loop
from boostkernel.testing.helpers import import_module_file
from boostkernel.testing.private import PrivateMariaDB

pytestmark = pytest.mark.timeout(240)
N = 1000


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PrivateMariaDB]:
    if not PrivateMariaDB.available():
        if os.environ.get("CI"):
            pytest.fail("MariaDB server binaries are missing under CI (apt-get install mariadb-server)")
        pytest.skip("MariaDB server binaries not found (apt-get install mariadb-server)")
    s = PrivateMariaDB.start(tmp_path / "db", binlog=True)
    yield s
    s.stop()


def test_1000_inserted_rows_become_1000_tasks_across_kill_9(tmp_path: Path, server: PrivateMariaDB) -> None:
    import pymysql

    db = pymysql.connect(host="127.0.0.1", port=server.port, user="root", autocommit=True)
    with db.cursor() as c:
        c.execute("CREATE DATABASE shop")
        c.execute("CREATE TABLE shop.orders (id INT PRIMARY KEY, amount DECIMAL(10,2), placed DATETIME)")
    ledger_path = tmp_path / "ledger.db"
    tasks = import_module_file(tmp_path, "binlog_chaos_tasks", f"""
        import random, time
        from boostkernel import boost
        from boostkernel.testing.chaos import Ledger

        ledger = Ledger({str(ledger_path)!r})

        @boost("orders_cdc", broker="mysql-binlog", broker_url={server.url.replace("mysql://", "mysql-binlog://")!r}, workers=8, max_deliveries=50,
               broker_options={{"tables": ["shop.orders"], "events": ["insert"], "flush_interval": 0.1,
                                "lock_retry": 0.2}})
        def on_order(schema: str, table: str, event: str, row: dict) -> None:
            assert (schema, table, event) == ("shop", "orders", "insert")
            time.sleep(random.uniform(0.01, 0.06))
            ledger.record(row["id"])
    """)
    tasks.on_order.make_broker().close()  # the queue's checkpoint starts here: rows from now on are tasks
    ledger = Ledger(ledger_path)

    def insert() -> None:  # 1,000 rows: single-row transactions and 20-row transactions, while the worker runs
        conn = pymysql.connect(host="127.0.0.1", port=server.port, user="root", autocommit=True)
        with conn.cursor() as c:
            i = 0
            while i < N:
                if (i // 100) % 2:
                    c.executemany("INSERT INTO shop.orders VALUES (%s, %s, NOW())",
                                  [(j, j / 10) for j in range(i, i + 20)])
                    i += 20
                else:
                    c.execute("INSERT INTO shop.orders VALUES (%s, %s, NOW())", (i, i / 10))
                    i += 1
        conn.close()

    worker = WorkerProcess("binlog_chaos_tasks", tmp_path)
    worker.start()
    writer = threading.Thread(target=insert)
    try:
        assert worker.wait_ready(60), worker.log()[-3000:]
        writer.start()
        kills = kill_loop(worker, every=1.5, duration=6.1)
        writer.join(60)
        assert wait_until(lambda: len(ledger.keys()) >= N, timeout=120, interval=0.2), \
            f"{N - len(ledger.keys())} of {N} rows never ran\n{worker.log()[-3000:]}"
        assert worker.wait_ready()
    finally:
        code = worker.terminate()
        db.close()
    report = ledger.check(range(N))
    report.kills = kills
    print(f"\nmysql-binlog chaos: {report.summary()}")
    assert report.lost == [] and report.unexpected == [], report.summary()
    assert kills >= 4
    assert code == 0
    assert "took over queue 'orders_cdc'" in worker.log(), "no restart resumed from a checkpoint"
    broker = tasks.on_order.make_broker()
    try:
        assert broker.dead_letters() == []
    finally:
        broker.close()
