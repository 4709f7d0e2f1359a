"""K25 graceful shutdown: SIGTERM to a worker with tasks running and many messages prefetched (SQLite, Redis).

Running tasks finish; prefetched ones are back in the queue when the process exits (not after a lease
or heartbeat timeout); a second worker then drains the queue; every message ran exactly once.
The ledger the tasks write to is a separate SQLite file, outside the broker under test.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from boostkernel.booster import REGISTRY
from boostkernel.testing.control_contract import broker_params, require_broker
from boostkernel.testing.helpers import wait_until
from boostkernel.worker import boosters_of

WORKER_MODULE = """
import os, sqlite3, time, threading
from boostkernel import boost, current_task

LEDGER = os.environ["LEDGER"]
_local = threading.local()

def _db():
    if not hasattr(_local, "db"):
        _local.db = sqlite3.connect(LEDGER, timeout=30, isolation_level=None)
    return _local.db

@boost({queue!r}, broker={broker!r}, concurrency="threads", workers={workers}, prefetch={prefetch}{extra})
def job(n: int, seconds: float) -> None:
    tid = current_task().task_id
    _db().execute("INSERT INTO ledger VALUES (?, ?, 'start', ?, ?)", (tid, n, os.getpid(), time.time()))
    time.sleep(seconds)
    _db().execute("INSERT INTO ledger VALUES (?, ?, 'end', ?, ?)", (tid, n, os.getpid(), time.time()))
"""

WORKERS, PREFETCH, TOTAL, SLOW = 4, 20, 120, 1.5


def _rows(ledger: Path, phase: str) -> list[tuple[str, int, int]]:
    with sqlite3.connect(ledger, timeout=30) as db:
        return db.execute("SELECT id, n, pid FROM ledger WHERE phase=?", (phase,)).fetchall()


def _start_worker(mod: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "from boostkernel.cli import main; main()", "worker", str(mod)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize("broker", ["sqlite", "redis"])
def test_sigterm_finishes_running_returns_prefetched_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   broker: str) -> None:
    require_broker(broker)
    monkeypatch.setenv("BOOSTKERNEL_DATA_DIR", str(tmp_path))
    ledger = tmp_path / "ledger.db"
    with sqlite3.connect(ledger) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE ledger (id TEXT, n INTEGER, phase TEXT, pid INTEGER, at REAL)")
    queue = f"g1_{uuid.uuid4().hex[:8]}"
    mod = tmp_path / f"gs_{queue}.py"
    extra = "".join(f", {k}={v!r}" for k, v in broker_params(broker).items())
    mod.write_text(textwrap.dedent(WORKER_MODULE.format(queue=queue, broker=broker, extra=extra, workers=WORKERS,
                                                        prefetch=PREFETCH)))
    env = {**os.environ, "BOOSTKERNEL_DATA_DIR": str(tmp_path), "LEDGER": str(ledger)}
    monkeypatch.setenv("LEDGER", str(ledger))
    (job,) = boosters_of(str(mod))
    bk = job.broker
    try:
        # the first messages are slow (they are running at SIGTERM), the rest fast
        published = [job.push(i, SLOW if i < 2 * WORKERS else 0.02).task_id for i in range(TOTAL)]
        w1 = _start_worker(mod, env)
        try:
            assert wait_until(lambda: len(_rows(ledger, "start")) >= WORKERS, 30), "the worker never started tasks"
            # running + prefetched: the worker holds more messages than it runs
            assert wait_until(lambda: bk.in_flight() >= WORKERS + PREFETCH // 2, 10), bk.in_flight()
            held = bk.in_flight()
            t0, sent_at = time.monotonic(), time.time()
            w1.send_signal(signal.SIGTERM)
            _, err = w1.communicate(timeout=60)
        finally:
            if w1.poll() is None:
                w1.kill()
        stop_s = time.monotonic() - t0
        assert w1.returncode == 0, err.decode()[-3000:]
        assert stop_s < SLOW * 2 + 5, f"shutdown took {stop_s:.1f}s"
        starts, ends = _rows(ledger, "start"), _rows(ledger, "end")
        assert sorted(r[0] for r in starts) == sorted(r[0] for r in ends), "a running task did not finish"
        assert len(starts) < held, "every held message ran: nothing was prefetched to give back"
        with sqlite3.connect(ledger) as db:
            late = db.execute("SELECT n FROM ledger WHERE phase='start' AND at > ?", (sent_at + 0.2,)).fetchall()
        assert late == [], f"tasks started after SIGTERM: {late}"
        # immediately back: nothing is left in flight waiting for a lease to expire
        assert bk.in_flight() == 0
        assert bk.count() == TOTAL - len(ends), "a message was lost or not returned"

        w2 = _start_worker(mod, env)
        try:
            assert wait_until(lambda: len(_rows(ledger, "end")) >= TOTAL, 60), len(_rows(ledger, "end"))
            time.sleep(0.5)
        finally:
            w2.send_signal(signal.SIGTERM)
            _, err2 = w2.communicate(timeout=60)
        assert w2.returncode == 0, err2.decode()[-3000:]
        ends = _rows(ledger, "end")
        runs = Counter(r[0] for r in ends)
        assert sorted(runs) == sorted(published), "lost or unexpected task ids"
        assert [t for t, n in runs.items() if n > 1] == [], "a message ran twice"
        assert bk.count() == 0 and bk.in_flight() == 0
        assert len({r[2] for r in ends}) == 2  # both workers did part of the work
    finally:
        job.purge()
        REGISTRY.pop(job.queue, None)
