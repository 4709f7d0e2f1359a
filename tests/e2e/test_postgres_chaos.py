"""kill -9 chaos on the ``postgres`` broker at its default heartbeat settings: nothing is lost, and each killed
worker's messages are back in the queue within the declared bound (15 s; dead_after 10 s + reap_interval 2 s).

1,000 tasks of 50-300 ms on one worker process with 20 threads; the worker is SIGKILLed every 1.5 s for 9 s
and restarted at once, then the last worker drains the queue. Every execution is written by the task into
a SQLite ledger outside PostgreSQL. lost must be 0; duplicates are printed; no row is left in flight.
"""

from __future__ import annotations

import socket
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from boostkernel.testing import wait_until
from boostkernel.testing.chaos import Ledger, WorkerProcess, kill_loop
from boostkernel.testing.helpers import service_url

pytestmark = [pytest.mark.serial, pytest.mark.service("postgres"), pytest.mark.timeout(240)]
N = 1000
BOUND = 15.0


def test_sigkill_every_1_5s_loses_nothing_and_recovers_within_15s(tmp_path: Path) -> None:
    import psycopg

    url, schema, queue = service_url("postgres"), f"bk_chaos_{uuid.uuid4().hex[:8]}", "chaos_pg"
    ledger_path = tmp_path / "ledger.db"
    (tmp_path / "chaos_pg_tasks.py").write_text(textwrap.dedent(f"""
        import random, time
        from boostkernel import boost
        from boostkernel.testing.chaos import Ledger

        ledger = Ledger({str(ledger_path)!r})

        @boost({queue!r}, broker="postgres", broker_url={url!r}, workers=20, max_deliveries=50,
               broker_options={{"schema": {schema!r}}})
        def work(i: int) -> None:
            time.sleep(random.uniform(0.05, 0.3))
            ledger.record(i)
    """))
    sys.path.insert(0, str(tmp_path))
    try:
        import chaos_pg_tasks as tasks  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tmp_path))
    db = psycopg.connect(url, autocommit=True)
    try:
        ledger = Ledger(ledger_path)
        tasks.work.push_many([(i,) for i in range(N)])
        assert tasks.work.count() == N

        # Recovery monitor: after each SIGKILL, the time until no row is owned by the killed process.
        host = socket.gethostname()
        killed: dict[int, float] = {}
        recovered: dict[int, float] = {}
        stop = threading.Event()
        mon_db = psycopg.connect(url, autocommit=True)

        def monitor() -> None:
            while not stop.is_set():
                for pid, t_kill in list(killed.items()):
                    if pid in recovered:
                        continue
                    row = mon_db.execute(f'SELECT count(*) FROM "{schema}".bk_messages WHERE owner LIKE %s',
                                         (f"{host}:{pid}:%",)).fetchone()
                    if row is not None and row[0] == 0:
                        recovered[pid] = time.monotonic() - t_kill
                stop.wait(0.1)

        worker = WorkerProcess("chaos_pg_tasks", tmp_path)
        real_kill = worker.kill

        def kill_and_note() -> None:
            pid = worker.proc.pid if worker.proc is not None else 0
            real_kill()
            killed[pid] = time.monotonic()

        worker.kill = kill_and_note  # type: ignore[method-assign]
        mon = threading.Thread(target=monitor, daemon=True)
        mon.start()
        worker.start()
        assert worker.wait_ready(60), worker.log()[-3000:]
        kills = kill_loop(worker, every=1.5, duration=9)
        try:
            assert wait_until(lambda: len(ledger.keys()) >= N, timeout=120, interval=0.5), worker.log()[-3000:]
            assert wait_until(lambda: len(recovered) == len(killed), timeout=BOUND + 5, interval=0.2)
            assert worker.wait_ready()
        finally:
            stop.set()
            mon.join(5)
            mon_db.close()
            assert worker.terminate() == 0
        report = ledger.check(range(N))
        report.kills = kills
        slowest = max(recovered.values(), default=0.0)
        print(f"\npostgres chaos: {report.summary()} recovery after kill: max {slowest:.1f}s")
        assert report.lost == []
        assert report.unexpected == []
        assert kills >= 5
        assert "message(s) of dead workers" in worker.log(), "no kill hit a message in flight: nothing was recovered"
        assert slowest <= BOUND, f"recovery took {slowest:.1f}s"
        broker = tasks.work.make_broker()
        assert broker.count() == 0 and broker.in_flight() == 0, "no orphaned in-flight rows"
        assert broker.dead_letters() == []
        broker.close()
    finally:
        db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        db.close()
