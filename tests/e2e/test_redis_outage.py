"""Redis stopped for 10 s mid-run: consumers and publishers resume and nothing published is lost.

The machine's shared Redis is used by other tests, so this test starts a private ``redis-server`` on its
own port (AOF on, ``appendfsync always``), runs a consumer process (threads) and a publisher thread
against it, stops the server (SIGTERM) for 10 s and starts it again on the same data directory.
Publishes that hit the outage block and retry (``publish_retry_timeout``); a publish that raised is
counted "indeterminate" (Jepsen ``total-queue``). Checked: every successfully published task ran
(ledger outside Redis), the consumer process never died, and the queue and in-flight records are empty.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from boostkernel.testing.helpers import wait_until

pytestmark = [pytest.mark.serial, pytest.mark.timeout(180)]

WORKER = r'''
import os, sqlite3, sys, threading, time
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


@boost(QUEUE, broker="redis", broker_url=URL, concurrency="threads", workers=20,
       broker_options={"heartbeat_interval": 0.5, "dead_after": 3.0, "reap_interval": 1.0, "idle_poll": 0.2,
                       "socket_timeout": 2.0, "socket_connect_timeout": 1.0, "publish_retry_timeout": 60})
def work(i: int) -> None:
    time.sleep(0.005)
    ledger().execute("INSERT INTO runs (i, pid) VALUES (?, ?)", (i, os.getpid()))


if __name__ == "__main__":
    work.consume()
    print("consuming", os.getpid(), flush=True)
    work.wait()
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_redis(port: int, data: Path, log: Path) -> subprocess.Popen[bytes]:
    exe = shutil.which("redis-server")
    assert exe is not None
    p = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
                          "--appendfsync", "always", "--dir", str(data), "--logfile", str(log)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return p
        except OSError:
            time.sleep(0.05)
    p.kill()
    raise AssertionError(f"redis-server did not start on port {port}")


@pytest.mark.skipif(shutil.which("redis-server") is None and not os.environ.get("CI"),
                    reason="redis-server binary not installed (apt-get install redis-server)")
def test_redis_down_for_10s_consumers_and_publishers_resume(tmp_path: Path, runs_ledger: Path) -> None:
    import redis

    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    data = tmp_path / "redis"
    data.mkdir()
    server = _start_redis(port, data, tmp_path / "redis.log")
    queue = f"outage_{uuid.uuid4().hex[:8]}"
    ledger = runs_ledger
    script = tmp_path / "outage_worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "LEDGER": str(ledger), "QUEUE": queue, "URL": url, "PYTHONUNBUFFERED": "1"}
    wlog = open(tmp_path / "worker.log", "w")  # noqa: SIM115 - closed at the end
    worker = subprocess.Popen([sys.executable, str(script)], env=env, stdout=wlog, stderr=wlog)

    from boostkernel import boost

    @boost(queue, broker="redis", broker_url=url,  # the publisher side of the same queue
           broker_options={"socket_timeout": 2.0, "socket_connect_timeout": 1.0, "publish_retry_timeout": 60})
    def work(i: int) -> None:
        raise AssertionError("runs in the worker process only")

    booster = work

    ok: list[int] = []
    indeterminate: list[int] = []
    stop = threading.Event()
    max_gap = [0.0]

    def publish() -> None:
        i = 0
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                booster.push(i)
                ok.append(i)
            except Exception:  # counted, never hidden: the outcome of this publish is unknown
                indeterminate.append(i)
            max_gap[0] = max(max_gap[0], time.monotonic() - t0)
            i += 1
            time.sleep(0.002)

    pub = threading.Thread(target=publish)
    pub.start()
    try:
        # Traffic before and after the outage is counted, not timed: a loaded machine publishes slower.
        time.sleep(5)
        assert wait_until(lambda: len(ok) >= 500, 60), f"only {len(ok)} published before the outage"
        server.send_signal(signal.SIGTERM)  # like `redis-cli shutdown`: AOF is fsynced
        server.wait(20)
        down_at = time.monotonic()
        time.sleep(10)
        server = _start_redis(port, data, tmp_path / "redis.log")
        print(f"\nredis down for {time.monotonic() - down_at:.1f}s")
        at_restart = len(ok)
        time.sleep(5)
        assert wait_until(lambda: len(ok) >= at_restart + 300, 60), "publishing did not resume after the outage"
        stop.set()
        pub.join(90)
        assert not pub.is_alive()
        r = redis.Redis.from_url(url)
        deadline = time.monotonic() + 60
        done: set[int] = set()
        while time.monotonic() < deadline:
            c = sqlite3.connect(ledger, timeout=30)
            done = {row[0] for row in c.execute("SELECT DISTINCT i FROM runs")}
            c.close()
            if set(ok) <= done:
                break
            time.sleep(0.5)
        assert worker.poll() is None, "the consumer process died during the outage"
        lost = sorted(set(ok) - done)
        print(f"published ok={len(ok)} indeterminate={len(indeterminate)} executed={len(done)} lost={len(lost)} "
              f"recovered_indeterminate={len(set(indeterminate) & done)} longest publish={max_gap[0]:.1f}s")
        assert len(ok) >= 800
        assert max_gap[0] >= 5, "the publisher never saw the outage"
        assert lost == [], f"{len(lost)} acknowledged publishes never ran, e.g. {lost[:10]}"
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
        base = f"bk:{{{queue}}}"
        assert r.llen(f"{base}:q") == 0
        assert [k for k in r.scan_iter(match=f"{base}:inflight:*")] == []
    finally:
        stop.set()
        if worker.poll() is None:
            worker.kill()
        server.terminate()
        server.wait(10)
        wlog.close()
