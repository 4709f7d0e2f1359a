"""kill -9 chaos on the ``file`` broker: a worker SIGKILLed repeatedly while tasks are in flight loses nothing.

The ChaosContract scenario (a worker with 8 threads, SIGKILLed every 1.5 s and restarted, a ledger outside
the broker) with short heartbeat settings, then a second scenario with two workers killed alternately, so
recovery by a live peer (not only by the restarted worker) is exercised.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from boostkernel.testing import wait_until
from boostkernel.testing.chaos import ChaosContract, Ledger, WorkerProcess, kill_loop
from boostkernel.testing.helpers import import_module_file

pytestmark = pytest.mark.timeout(240)
OPTIONS = {"dead_after": 2.0, "heartbeat_interval": 0.4, "reap_interval": 0.4}


class TestFileChaos(ChaosContract):
    chaos_tasks = 300
    chaos_kills = 4

    @pytest.fixture
    def chaos_boost_options(self, tmp_path: Path) -> dict[str, object]:
        return {"broker": "file", "broker_url": f"file://{tmp_path}/chaos", "broker_options": OPTIONS}


def test_two_workers_killed_in_turn_lose_nothing(tmp_path: Path) -> None:
    n = 300
    ledger_path = tmp_path / "ledger.db"
    tasks = import_module_file(tmp_path, "chaos_file_two", f"""
        import random, time
        from boostkernel import boost
        from boostkernel.testing.chaos import Ledger

        ledger = Ledger({str(ledger_path)!r})

        @boost("chaos_file_two", broker="file", broker_url="file://{tmp_path}/q", workers=10,
               max_deliveries=50, broker_options={OPTIONS!r})
        def work(i: int) -> None:
            time.sleep(random.uniform(0.02, 0.15))
            ledger.record(i)
    """)
    ledger = Ledger(ledger_path)
    tasks.work.push_many([(i,) for i in range(n)])
    a, b = WorkerProcess("chaos_file_two", tmp_path), WorkerProcess("chaos_file_two", tmp_path)
    a.start()
    b.start()
    try:
        assert a.wait_ready() and b.wait_ready(), a.log()[-2000:] + b.log()[-2000:]
        kills = kill_loop(a, every=1.2, duration=3) + kill_loop(b, every=1.2, duration=3)
        assert wait_until(lambda: len(ledger.keys()) >= n, timeout=120, interval=0.2), \
            f"{n - len(ledger.keys())} tasks never ran\n{a.log()[-2000:]}\n{b.log()[-2000:]}"
        assert a.wait_ready() and b.wait_ready()
    finally:
        codes = (a.terminate(), b.terminate())
    report = ledger.check(range(n))
    report.kills = kills
    print("\nfile chaos, two workers:", report.summary())
    assert report.lost == [] and report.unexpected == []
    assert codes == (0, 0)
    broker = tasks.work.make_broker()
    try:
        assert broker.count() == 0 and broker.in_flight() == 0, "no message left in a dead worker's folder"
        assert broker.dead_letters() == []
    finally:
        broker.close()
