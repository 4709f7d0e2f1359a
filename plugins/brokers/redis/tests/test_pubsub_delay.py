"""redis-pubsub with a countdown: the delayed message runs once per subscriber, not before its eta.

Three real ``boostkernel worker`` processes subscribe to one channel. The kernel's fallback for brokers
without native delay re-publishes a not-yet-due message; on a fan-out channel that reached every subscriber
again, so one delayed message ran 15 times with 3 subscribers. Each subscriber now holds its copy until due.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from boostkernel.testing.helpers import service_url, wait_until

pytestmark = pytest.mark.service("redis")

BK = str(Path(sys.executable).parent / "boostkernel")

TASKS = '''
import os, time
import redis
from boostkernel import boost

R = redis.Redis.from_url({url!r})


@boost({queue!r}, broker="redis-pubsub", broker_url={url!r})
def tick(tag):
    R.rpush({runs!r}, f"{{os.getpid()}} {{time.time()}} {{tag}}")
'''


def test_a_delayed_message_runs_once_per_subscriber(tmp_path: Path, unique_queue: str) -> None:
    import redis

    from boostkernel import TaskOptions
    from boostkernel.worker import _import_target

    url = service_url("redis")
    r = redis.Redis.from_url(url)
    runs = f"test:pubsub-delay:{uuid.uuid4().hex}"
    path = tmp_path / f"pubsub_{unique_queue}.py"
    path.write_text(textwrap.dedent(TASKS.format(queue=unique_queue, url=url, runs=runs)))
    tick = _import_target(str(path)).tick
    procs = [subprocess.Popen([BK, "worker", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}) for _ in range(3)]
    try:
        channel = tick.broker.channel
        assert wait_until(lambda: r.pubsub_numsub(channel)[0][1] == 3, timeout=60), "workers did not subscribe"
        t0 = time.time()
        tick.publish({"tag": "delayed"}, TaskOptions(countdown=1.0))
        tick.push("now")
        assert wait_until(lambda: r.llen(runs) >= 6, timeout=20), r.lrange(runs, 0, -1)
        time.sleep(2.5)  # duplicates, if any, would arrive within the next re-publish cycles (<= 1 s each)
        rows = [row.decode().split() for row in r.lrange(runs, 0, -1)]
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        outs = [p.communicate(timeout=60)[0] for p in procs]
        r.delete(runs)
    delayed = [(int(pid), float(t)) for pid, t, tag in rows if tag == "delayed"]
    assert len(delayed) == 3, f"the delayed message ran {len(delayed)} times with 3 subscribers: {rows}"
    assert {pid for pid, _ in delayed} == {p.pid for p in procs}
    assert all(t >= t0 + 1.0 - 0.05 for _, t in delayed), "ran before its countdown"
    assert sorted(int(pid) for pid, _, tag in rows if tag == "now") == sorted(p.pid for p in procs)
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-3000:]
