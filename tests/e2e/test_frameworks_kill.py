"""Delivery guarantee of each framework broker, measured: kill -9 the worker while a task runs.

A worker (``boostkernel worker examples.frameworks.tasks``) starts ``slow`` (which writes a marker file when
it starts), is killed with SIGKILL, and a second worker is started. The test records whether the task runs
again (at-least-once) or is gone (at-most-once) within a bounded window, and asserts the documented
outcome for each framework. Recovery knobs are shortened through ``BOOSTKERNEL_BROKER_OPTIONS`` where the
framework has one (celery's Redis ``visibility_timeout``, dramatiq's Redis heartbeat timeout); with the
defaults recovery takes an hour (celery on Redis) or minutes (dramatiq on Redis).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from boostkernel.testing.helpers import service_url, wait_until

pytestmark = pytest.mark.serial  # "runs again within 25 s": run alone (.ci/run)

ROOT = Path(__file__).resolve().parents[2]
WORKER = [sys.executable, "-c", "from boostkernel.cli import main; main()", "worker", "examples.frameworks.tasks",
          "-q", "fw_example_slow"]

CASES = [
    # framework, service, broker_options, expected outcome
    pytest.param("celery", "rabbitmq", {}, "redelivered", marks=pytest.mark.service("rabbitmq"), id="celery-rabbitmq"),
    pytest.param("celery", "redis", {"app_config": {"broker_transport_options": {
        "visibility_timeout": 3, "unacked_restore_interval": 1, "unacked_restore_throttle": 1}}},
                 "redelivered", marks=pytest.mark.service("redis"), id="celery-redis"),
    pytest.param("dramatiq", "rabbitmq", {}, "redelivered", marks=pytest.mark.service("rabbitmq"),
                 id="dramatiq-rabbitmq"),
    pytest.param("dramatiq", "redis", {"broker_kwargs": {"heartbeat_timeout": 2000, "maintenance_chance": 1_000_000}},
                 "redelivered", marks=pytest.mark.service("redis"), id="dramatiq-redis"),
    pytest.param("huey", "redis", {}, "lost", marks=pytest.mark.service("redis"), id="huey-redis"),
    pytest.param("rq", "redis", {}, "lost", marks=pytest.mark.service("redis"), id="rq-redis"),
]


def _env(framework: str, service: str, options: dict[str, Any], data_dir: Path) -> dict[str, str]:
    return {**os.environ, "BOOSTKERNEL_BROKER": framework, "BOOSTKERNEL_BROKER_URL": service_url(service),
            "BOOSTKERNEL_BROKER_OPTIONS": json.dumps(options), "BOOSTKERNEL_DATA_DIR": str(data_dir),
            "BOOSTKERNEL_LOG_LEVEL": "WARNING"}


def _py(code: str, env: dict[str, str]) -> str:
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""


@pytest.mark.parametrize(("framework", "service", "options", "expected"), CASES)
def test_kill_9_during_a_task(framework: str, service: str, options: dict[str, Any], expected: str,
                              tmp_path: Path, drop_example_rabbitmq_queues: Callable[[], None]) -> None:
    if service == "rabbitmq":
        drop_example_rabbitmq_queues()  # celery and dramatiq declare them with different arguments
    env = _env(framework, service, options, tmp_path)
    marker = tmp_path / "started"
    _py("from examples.frameworks import tasks; tasks.slow.purge()", env)
    logs = [open(tmp_path / f"worker{i}.log", "wb") for i in (1, 2)]  # noqa: SIM115 - closed in finally
    first = subprocess.Popen(WORKER, cwd=ROOT, env=env, stdout=logs[0], stderr=subprocess.STDOUT)
    second = None
    try:
        task_id = _py(f"from examples.frameworks import tasks; print(tasks.slow.push({str(marker)!r}, 3).task_id)",
                      env)
        assert wait_until(marker.exists, 30), "the first worker never started the task: " + _log(tmp_path, 1)
        assert marker.read_text() == str(first.pid)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        marker.unlink()
        second = subprocess.Popen(WORKER, cwd=ROOT, env=env, stdout=logs[1], stderr=subprocess.STDOUT)
        window = 25.0 if expected == "redelivered" else 8.0
        ran_again = wait_until(marker.exists, window, interval=0.1)
        if expected == "redelivered":
            assert ran_again, (f"{framework} on {service}: the killed task did not run again within {window}s: "
                               + _log(tmp_path, 2))
            assert marker.read_text() == str(second.pid)
            status = _py("import time\nfrom examples.frameworks import tasks\n"
                         f"print(tasks.slow.result({task_id!r}).get(30))", env)
            assert status == "done"
        else:
            assert not ran_again, f"{framework} on {service} ran the killed task again: update its README"
            remaining = _py("from examples.frameworks import tasks; print(tasks.slow.count())", env)
            assert remaining == "0", f"the task is still queued ({remaining}): not lost after all"
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        for f in logs:
            f.close()
        _py("from examples.frameworks import tasks; tasks.slow.purge()", env)


def _log(tmp_path: Path, i: int) -> str:
    return (tmp_path / f"worker{i}.log").read_text(errors="replace")[-3000:]
