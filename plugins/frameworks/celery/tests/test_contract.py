"""The framework-broker contract against celery on the real Redis and RabbitMQ.

celery's worker runs once per process (its event loop is process-global and it cannot be restarted
in-process), so one process consumes one celery broker URL: the Redis contract runs in this process and the
RabbitMQ contract in a child pytest process (contract_rabbitmq.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from boostkernel.testing import FrameworkContract
from boostkernel.testing.helpers import service_url

HERE = Path(__file__).resolve().parent


@pytest.mark.service("redis")
class TestCeleryRedis(FrameworkContract):
    unsupported = {"timeout": 5, "qps_scope": "global", "retry_backoff": 0.5, "dedup": True}

    @pytest.fixture
    def framework_params(self) -> dict[str, Any]:
        return {"broker": "celery", "broker_url": service_url("redis")}


@pytest.mark.service("rabbitmq")
def test_rabbitmq_contract_in_its_own_process() -> None:
    root = HERE.parents[3]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(HERE / "contract_rabbitmq.py"), "-q", "-p", "no:cacheprovider",
         "-o", "python_files=contract_*.py"],
        cwd=root, env=dict(os.environ), capture_output=True, text=True, timeout=240,
    )
    tail = proc.stdout[-3000:]
    assert proc.returncode == 0, tail + proc.stderr[-2000:]
    m = re.search(r"(\d+) passed", tail)
    assert m and int(m.group(1)) >= 12, tail


@pytest.mark.service("redis")
def test_one_broker_url_per_process_is_refused_clearly(unique_queue: str, tmp_path: Path) -> None:
    from boostkernel import ConfigError, boost

    a = boost(f"{unique_queue}_r", broker="celery", broker_url=service_url("redis"), data_dir=str(tmp_path))(abs)
    b = boost(f"{unique_queue}_a", broker="celery", broker_url="amqp://guest:secret@127.0.0.1:5672/",
              data_dir=str(tmp_path))(round)
    with pytest.raises(ConfigError, match="one celery broker URL") as info:
        a.broker_class.start_worker([a, b])
    assert "secret" not in str(info.value)


@pytest.mark.service("redis")
@pytest.mark.service("rabbitmq")
def test_retries_are_republished_through_the_boosters_own_broker(unique_queue: str, tmp_path: Path) -> None:
    """Regression: celery's pool threads traced tasks through its default app, so a retry was published to
    celery's built-in default broker (amqp://localhost) and never came back to this worker."""
    from kombu import Connection

    from boostkernel import boost

    calls: list[int] = []

    def flaky(i: int) -> int:
        calls.append(i)
        if len(calls) == 1:
            raise ConnectionError("first attempt fails")
        return i

    b = boost(unique_queue, broker="celery", broker_url=service_url("redis"), results=True, max_retries=2,
              data_dir=str(tmp_path))(flaky)
    b.consume()
    try:
        assert b.push(7).get(20) == 7
        assert calls == [7, 7]
    finally:
        b.stop(10)
    with Connection(service_url("rabbitmq")) as conn:
        with pytest.raises(Exception, match="NOT_FOUND"):
            conn.default_channel.queue_declare(queue=unique_queue, passive=True)
