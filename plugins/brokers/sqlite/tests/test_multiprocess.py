"""Several worker processes on one SQLite file: every message runs exactly once (no crashes here)."""

from __future__ import annotations

from pathlib import Path

from boostkernel.testing import wait_until
from boostkernel.testing.chaos import Ledger, WorkerProcess
from boostkernel.testing.helpers import import_module_file


def test_three_processes_share_one_queue_file(tmp_path: Path) -> None:
    db, ledger_path = tmp_path / "q.db", tmp_path / "ledger.db"
    tasks = import_module_file(tmp_path, "mp_sqlite_tasks", f"""
        from boostkernel import boost
        from boostkernel.testing.chaos import Ledger

        ledger = Ledger({str(ledger_path)!r})

        @boost("mp_sqlite", broker="sqlite", broker_url="sqlite:///{db}", workers=8)
        def work(i: int) -> None:
            ledger.record(i)
    """)
    n = 3000
    ledger = Ledger(ledger_path)
    workers = [WorkerProcess("mp_sqlite_tasks", tmp_path, log_path=tmp_path / f"w{i}.log") for i in range(3)]
    for w in workers:
        w.start()
    try:
        # Publish only once every process consumes: on a loaded machine a late starter could otherwise find
        # the queue already drained by the other two, and "all three took part" would fail for no fault.
        for w in workers:
            assert w.wait_ready(timeout=60)
        tasks.work.push_many([(i,) for i in range(n)])
        assert wait_until(lambda: sum(ledger.keys().values()) >= n, timeout=90, interval=0.2)
    finally:
        codes = [w.terminate() for w in workers]
    assert codes == [0, 0, 0]
    report = ledger.check(range(n))
    assert report.lost == [] and report.duplicated == {}, report.summary()
    pids = {pid for pid in _pids(ledger_path)}
    assert len(pids) == 3, "all three processes took part"
    assert "database is locked" not in "".join(w.log() for w in workers)


def _pids(path: Path) -> set[int]:
    import sqlite3

    with sqlite3.connect(path) as c:
        return {r[0] for r in c.execute("SELECT DISTINCT pid FROM ran")}
