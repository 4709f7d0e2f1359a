"""Chaos on the ``rabbitmq`` broker: the consumer process is SIGKILLed every 2 s for 30 s and restarted.

5,000 tasks of 100-300 ms (about 50 s of work at full speed, so the queue cannot drain while the kills
last) run on one worker process with 20 threads and prefetch 50 (so every kill hits a
worker holding ~70 unacked deliveries). A supervisor (this test) kills the worker with SIGKILL every 2 s
for 30 s and restarts it at once, then lets a last worker drain the queue and stops it with SIGTERM.
Every execution is written by the task into a SQLite ledger *outside RabbitMQ* (committed before the
task returns, so before its ack). Checked, Jepsen ``total-queue`` style: lost = published - executed must
be 0; duplicates are counted and printed and bounded by (running + prefetched) x kills; every duplicated
task was re-run from a delivery RabbitMQ flagged ``redelivered``; the queue and its dead-letter queue are
empty at the end; no stale delivery tag reached the server (no ``PRECONDITION_FAILED``/``unknown delivery
tag`` channel error in the workers' logs).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from boostkernel.testing.helpers import service_url

pytestmark = [pytest.mark.serial, pytest.mark.service("rabbitmq"), pytest.mark.timeout(300)]

WORKERS, PREFETCH = 20, 50

WORKER = r'''
import os, random, sqlite3, sys, threading, time
from boostkernel import boost
from boostkernel.logs import setup_logging

setup_logging("WARNING")
LEDGER, QUEUE, URL = os.environ["LEDGER"], os.environ["QUEUE"], os.environ["URL"]
local = threading.local()


def ledger():
    c = getattr(local, "c", None)
    if c is None:
        c = local.c = sqlite3.connect(LEDGER, timeout=30, isolation_level=None)
        c.execute("PRAGMA busy_timeout=30000")
    return c


@boost(QUEUE, broker=URL, concurrency="threads", workers=int(os.environ["WORKERS"]),
       prefetch=int(os.environ["PREFETCH"]), max_deliveries=1000)
def work(i: int) -> None:
    from boostkernel.consumer import current_task

    time.sleep(random.uniform(0.1, 0.3))
    ctx = current_task()
    ledger().execute("INSERT INTO runs (i, pid, delivery, t) VALUES (?, ?, ?, ?)",
                     (i, os.getpid(), ctx.delivery.delivery_count if ctx else 0, time.time()))


if __name__ == "__main__":
    if sys.argv[1:] == ["publish"]:
        n = int(os.environ["N"])
        work.push_many([(i,) for i in range(n)])
        print("published", n, flush=True)
    else:
        work.consume()
        print("consuming", os.getpid(), flush=True)
        work.wait()
'''


def _rows(path: Path) -> list[tuple[int, int]]:
    c = sqlite3.connect(path, timeout=30)
    try:
        return c.execute("SELECT i, delivery FROM runs").fetchall()
    finally:
        c.close()


def test_sigkill_every_2s_for_30s_loses_nothing(tmp_path: Path, runs_ledger: Path) -> None:
    from boostkernel_rabbitmq.broker import RabbitmqBroker

    n, kill_every, kill_for = 5_000, 2.0, 30.0
    url = service_url("rabbitmq")
    queue = f"chaos_{uuid.uuid4().hex[:8]}"
    admin = RabbitmqBroker(queue, url)
    script = tmp_path / "chaos_worker.py"
    script.write_text(WORKER)
    ledger = runs_ledger
    env = {**os.environ, "LEDGER": str(ledger), "QUEUE": queue, "URL": url, "N": str(n), "PYTHONUNBUFFERED": "1",
           "WORKERS": str(WORKERS), "PREFETCH": str(PREFETCH)}
    logfile = tmp_path / "workers.log"
    log = open(logfile, "w")  # noqa: SIM115 - closed at the end
    killed = 0
    worker: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run([sys.executable, str(script), "publish"], env=env, check=True, timeout=60)
        assert admin.count() == n

        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen([sys.executable, str(script)], env=env, stdout=log, stderr=log)

        worker = start()
        t_end = time.monotonic() + kill_for
        while time.monotonic() < t_end:
            time.sleep(kill_every)
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            killed += 1
            worker = start()
        executed_during_chaos = len({i for i, _ in _rows(ledger)})
        deadline = time.monotonic() + 120  # the last worker drains the queue
        while time.monotonic() < deadline:
            if len({i for i, _ in _rows(ledger)}) >= n:
                break
            time.sleep(0.5)
        deadline = time.monotonic() + 30  # the last worker must be consuming before it is asked to stop
        while time.monotonic() < deadline and f"consuming {worker.pid}" not in logfile.read_text():
            time.sleep(0.1)
        worker.send_signal(signal.SIGTERM)  # graceful: finishes running tasks, returns prefetched ones
        assert worker.wait(30) == 0
        left_in_queue, dead = admin.count(), admin.dead_letters()
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
        log.close()
        try:
            admin.delete_queues()
        finally:
            admin.close()

    rows = _rows(ledger)
    runs: dict[int, list[int]] = {}
    for i, delivery in rows:
        runs.setdefault(i, []).append(delivery)
    lost = sorted(set(range(n)) - set(runs))
    unexpected = sorted(set(runs) - set(range(n)))
    dups = {i: d for i, d in runs.items() if len(d) > 1}
    extra_runs = sum(len(d) - 1 for d in dups.values())
    print(f"\nrabbitmq chaos: {n} tasks, {killed} SIGKILLs every {kill_every}s "
          f"({executed_during_chaos} distinct tasks done during the kills); lost={len(lost)} "
          f"unexpected={len(unexpected)} duplicated_tasks={len(dups)} extra_runs={extra_runs} "
          f"({100 * extra_runs / n:.2f}%)")
    assert killed >= 14
    assert executed_during_chaos < n, "the queue drained before the kills ended: the scenario tested nothing"
    assert lost == [], f"{len(lost)} tasks never ran, e.g. {lost[:10]}"
    assert unexpected == []
    # a duplicate is a message a killed worker ran but could not ack: bounded by what one worker holds
    assert extra_runs <= (WORKERS + PREFETCH) * killed
    assert all(max(d) >= 2 for d in dups.values()), "a re-run came from a delivery not flagged redelivered"
    assert left_in_queue == 0 and dead == []
    text = logfile.read_text()
    assert "unknown delivery tag" not in text and "PRECONDITION_FAILED" not in text, text[-3000:]
