"""Redis at scale: the connection pool is sized to the concurrency, so ``workers=200`` with results does not
run out of connections (redis-py's default pool stops at 100 and fails the 101st checkout at once).

1,000 one-second tasks through the real ``boostkernel worker`` CLI, under threads and under gevent: every
task succeeds, and the queue is empty with nothing left in flight afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from boostkernel.testing.helpers import service_url, wait_until

pytestmark = pytest.mark.service("redis")

BK = str(Path(sys.executable).parent / "boostkernel")

TASKS = '''
import time
from boostkernel import boost


@boost({queue!r}, broker="redis", broker_url={url!r}, concurrency={mode!r}, workers=200, results=True)
def slow(i):
    time.sleep(1.0)
    return i
'''


@pytest.mark.parametrize("mode", ["threads", "gevent"])
def test_200_workers_run_1000_one_second_tasks_without_running_out_of_connections(
        mode: str, tmp_path: Path, unique_queue: str) -> None:
    from boostkernel.errors import ResultTimeout
    from boostkernel.worker import _import_target

    path = tmp_path / f"scale_{unique_queue}.py"
    path.write_text(textwrap.dedent(TASKS.format(queue=unique_queue, url=service_url("redis"), mode=mode)))
    slow = _import_target(str(path)).slow
    slow.purge()
    results = slow.push_many([(i,) for i in range(1000)])
    proc = subprocess.Popen([BK, "worker", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        values: list[Any] = []
        deadline = time.monotonic() + 120
        for r in results:
            while True:
                try:
                    values.append(r.get(timeout=2))
                    break
                except ResultTimeout:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        proc.kill()
                        pytest.fail(f"result missing (worker exit {proc.poll()}):\n{proc.communicate()[0][-4000:]}")
        assert values == list(range(1000))
        assert wait_until(lambda: slow.broker.in_flight() == 0, timeout=10), "messages left unsettled"
        assert slow.broker.count() == 0
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-4000:]
    assert "Too many connections" not in out and "MaxConnectionsError" not in out, out[-4000:]
    assert "Traceback" not in out, out[-4000:]
