"""The same example module (examples/frameworks/tasks.py) runs unchanged on every framework broker:
only BOOSTKERNEL_BROKER / BOOSTKERNEL_BROKER_URL change. Each run is a fresh process (as a user's would be)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from boostkernel.testing.helpers import service_url

ROOT = Path(__file__).resolve().parents[2]

CASES = [
    pytest.param("celery", "redis", marks=pytest.mark.service("redis"), id="celery-redis"),
    pytest.param("celery", "rabbitmq", marks=pytest.mark.service("rabbitmq"), id="celery-rabbitmq"),
    pytest.param("dramatiq", "redis", marks=pytest.mark.service("redis"), id="dramatiq-redis"),
    pytest.param("dramatiq", "rabbitmq", marks=pytest.mark.service("rabbitmq"), id="dramatiq-rabbitmq"),
    pytest.param("rq", "redis", marks=pytest.mark.service("redis"), id="rq-redis"),
    pytest.param("huey", "redis", marks=pytest.mark.service("redis"), id="huey-redis"),
]


@pytest.mark.parametrize(("framework", "service"), CASES)
def test_example_module_runs_unchanged(framework: str, service: str, tmp_path: Path,
                                      drop_example_rabbitmq_queues: Callable[[], None]) -> None:
    if service == "rabbitmq":
        drop_example_rabbitmq_queues()  # celery and dramatiq declare them with different arguments
    env = {**os.environ, "BOOSTKERNEL_BROKER": framework, "BOOSTKERNEL_BROKER_URL": service_url(service),
           "BOOSTKERNEL_DATA_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "examples.frameworks.run"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {
        "broker": framework,
        "add": [0, 2, 4, 6, 8],
        "flaky": 2,
        "countdown_waited": True,
        "fail": ["ValueError", "bad input"],
    }
