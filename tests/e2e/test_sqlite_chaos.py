"""kill -9 chaos on the embedded default: a SQLite worker killed repeatedly loses nothing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from boostkernel.testing import wait_until
from boostkernel.testing.chaos import Ledger, WorkerProcess, kill_loop
from boostkernel.testing.helpers import import_module_file

pytestmark = pytest.mark.serial  # kill loops with time bounds: run alone (.ci/run)

N = 1000


def test_sigkill_while_1000_tasks_in_flight_loses_none(tmp_path: Path) -> None:
    db, ledger_path = tmp_path / "queue.db", tmp_path / "ledger.db"
    tasks = import_module_file(tmp_path, "chaos_sqlite_tasks", f"""
        import random, time
        from boostkernel import boost
        from boostkernel.testing.chaos import Ledger

        ledger = Ledger({str(ledger_path)!r})

        @boost("chaos_sqlite", broker="sqlite", broker_url="sqlite:///{db}", workers=20, max_deliveries=50,
               broker_options={{"lease": 2.0, "heartbeat_interval": 0.5, "reap_interval": 0.5}})
        def work(i: int) -> None:
            time.sleep(random.uniform(0.05, 0.3))
            ledger.record(i)
    """)
    ledger = Ledger(ledger_path)
    tasks.work.push_many([(i,) for i in range(N)])
    assert tasks.work.count() == N

    worker = WorkerProcess("chaos_sqlite_tasks", tmp_path)
    worker.start()
    kills = kill_loop(worker, every=1.5, duration=9)
    # after the last restart the worker drains the queue, including what dead workers held
    assert wait_until(lambda: len(ledger.keys()) >= N, timeout=90, interval=0.5), worker.log()[-3000:]
    assert worker.wait_ready()
    assert worker.terminate() == 0
    report = ledger.check(range(N))
    report.kills = kills
    print("\nsqlite chaos:", report.summary())
    assert report.lost == []
    assert report.unexpected == []
    broker = tasks.work.make_broker()
    assert broker.count() == 0 and broker.in_flight() == 0, "no orphaned in-flight rows"
    assert broker.dead_letters() == []
    broker.close()
    assert kills >= 5


def test_malformed_messages_among_1000_good_ones(tmp_path: Path) -> None:
    from boostkernel.broker import Outgoing

    db, ledger_path = tmp_path / "queue.db", tmp_path / "ledger.db"
    tasks = import_module_file(tmp_path, "malformed_tasks", f"""
        from boostkernel import boost
        from boostkernel.testing.chaos import Ledger

        ledger = Ledger({str(ledger_path)!r})

        @boost("malformed", broker="sqlite", broker_url="sqlite:///{db}", workers=8)
        def work(i: int) -> None:
            ledger.record(i)
    """)
    b = tasks.work.broker
    tasks.work.push_many([(i,) for i in range(500)])
    b.publish(Outgoing("non-json", b"\x80\x81 definitely not json"))
    b.publish(Outgoing("wrong-args", b'{"v": 1, "id": "wrong-args", "args": [], "kwargs": {"j": 1}}'))
    tasks.work.push_many([(i,) for i in range(500, 1000)])
    ledger = Ledger(ledger_path)
    worker = WorkerProcess("malformed_tasks", tmp_path)
    worker.start()
    try:
        assert worker.wait_ready()
        assert wait_until(lambda: len(ledger.keys()) >= 1000 and len(b.dead_letters()) == 2, timeout=60,
                          interval=0.2), worker.log()[-3000:]
        time.sleep(0.3)
        assert worker.alive() and len(worker.pids) == 1, "the worker never restarted"
    finally:
        assert worker.terminate() == 0
    report = ledger.check(range(1000))
    assert report.lost == [] and report.duplicated == {}
    reasons = {r.id: r.reason for r in b.dead_letters()}
    assert reasons["non-json"].startswith("decode error: not valid JSON")
    assert reasons["wrong-args"].startswith("arguments do not fit work(i: int)")
    assert "Traceback" not in worker.log(), "bad input is logged as a reason, never as a crash"
