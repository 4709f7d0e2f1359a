"""One poison message among 200 tasks: it kills its worker every time it runs.

The worker (4 threads, so about 8 more messages prefetched around the poison) is restarted whenever it
dies. After ``max_deliveries`` (3) deaths the poison must be in the dead-letter queue with a crash-loop
reason, the other 199 tasks must all have run, and the dead-letter queue must hold exactly that one
message: the bystanders a dying worker had prefetched, or was running, go back without being charged.
Recovery options are shortened so the scenario takes seconds (defaults are measured in
docs/reliability.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from boostkernel.testing import wait_until
from boostkernel.testing.chaos import Ledger, WorkerProcess
from boostkernel.testing.helpers import service_url

pytestmark = pytest.mark.timeout(240)

N, POISON = 200, 7
FAST_REDIS = {"dead_after": 1.0, "heartbeat_interval": 0.2, "reap_interval": 0.2}

MODULE = '''
import json, os, signal, time
from boostkernel import boost
from boostkernel.testing.chaos import Ledger

ledger = Ledger(os.environ["LEDGER"])


@boost(os.environ["QUEUE"], broker=os.environ["BROKER"], broker_url=os.environ["BROKER_URL"] or None, workers=4,
       max_deliveries=3, broker_options=json.loads(os.environ["OPTIONS"]))
def work(i: int) -> None:
    if i == {poison}:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.02)
    ledger.record(i)
'''


def _broker_url(broker: str, tmp_path: Path) -> str:
    if broker == "sqlite":
        return f"sqlite:///{tmp_path}/queue.db"
    return service_url("redis" if broker.startswith("redis") else broker)


CASES = [
    pytest.param("sqlite", {"lease": 1.0, "heartbeat_interval": 0.2, "reap_interval": 0.2}, id="sqlite"),
    pytest.param("redis", FAST_REDIS, id="redis", marks=pytest.mark.service("redis")),
    pytest.param("redis-streams", FAST_REDIS, id="redis-streams", marks=pytest.mark.service("redis")),
    pytest.param("rabbitmq", {}, id="rabbitmq", marks=pytest.mark.service("rabbitmq")),
]


@pytest.mark.parametrize(("broker", "options"), CASES)
def test_one_poison_among_200_tasks(tmp_path: Path, broker: str, options: dict[str, Any]) -> None:
    queue = f"poison-{broker}-{uuid.uuid4().hex[:8]}"
    (tmp_path / "poison_tasks.py").write_text(MODULE.replace("{poison}", str(POISON)))
    url = _broker_url(broker, tmp_path)
    env = {"LEDGER": str(tmp_path / "ledger.db"), "QUEUE": queue, "BROKER": broker, "BROKER_URL": url,
           "OPTIONS": json.dumps(options)}
    ledger = Ledger(env["LEDGER"])
    sys.path.insert(0, str(tmp_path))
    import os

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        sys.modules.pop("poison_tasks", None)
        import poison_tasks as tasks  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tmp_path))
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    booster = tasks.work
    booster.push_many([(i,) for i in range(N)])
    poison_id = None
    worker = WorkerProcess("poison_tasks", tmp_path, env=env)
    worker.start()
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if len(ledger.keys()) >= N - 1 and booster.dead_letters():
                break
            if not worker.alive():
                worker.start()
            time.sleep(0.1)
        deaths = len(worker.pids) - 1
        dead = booster.dead_letters()
        report = ledger.check(i for i in range(N) if i != POISON)
        assert report.lost == [], (report.summary(), worker.log()[-3000:])
        assert len(dead) == 1, [(r.id, r.reason) for r in dead]
        body = json.loads(dead[0].body)
        assert body["args"] == [POISON], "the dead-letter queue holds the poison, not a bystander"
        poison_id = dead[0].id
        assert dead[0].reason.startswith("crash-loop"), dead[0].reason
        assert deaths == 3, f"the poison killed {deaths} workers before it was dead-lettered (expected 3)"
        # the worker keeps consuming after the poison left: nothing else is charged or stuck
        assert wait_until(lambda: worker.alive() and booster.count() == 0, timeout=10)
        assert len(worker.pids) == 4
    finally:
        worker.terminate()
    cli = subprocess.run([sys.executable, "-m", "boostkernel", "dlq", "list", queue, "--broker", broker,
                          *(["--broker-url", url] if url else [])], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "COLUMNS": "400"})
    assert poison_id in cli.stdout and "crash-loop" in cli.stdout, cli.stdout + cli.stderr
    booster.broker.purge_dead_letters()
