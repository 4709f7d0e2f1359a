"""K14 status/result records and K15 RPC (get, await, then, wait_all) on memory, sqlite and redis."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from boostkernel import (
    ResultsNotEnabled,
    ResultTimeout,
    TaskFailed,
    await_all,
    boost,
    wait_all,
)
from boostkernel.booster import REGISTRY
from boostkernel.testing.control_contract import broker_params, require_broker


def q() -> str:
    return f"rr_{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=["memory", "sqlite", "redis"])
def broker(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("BOOSTKERNEL_DATA_DIR", str(tmp_path))
    if request.param == "redis":
        require_broker("redis")
    return str(request.param)


def _params(broker: str) -> dict[str, object]:
    return {"broker": broker, **broker_params(broker)}


def test_records_are_complete_running_then_final(broker: str) -> None:
    started = threading.Event()
    release = threading.Event()

    @boost(q(), results=True, workers=2, **_params(broker))
    def work(x: int, label: str = "a") -> dict[str, int]:
        started.set()
        release.wait(10)
        return {"x": x}

    r = work.push(5, label="b")
    work.consume()
    try:
        assert started.wait(10)
        running = r.record()
        assert running is not None and running["status"] == "running" and r.status == "running"
        assert running["args"] == [5] and running["kwargs"] == {"label": "b"}
        assert "finished_at" not in running
        release.set()
        assert r.get(10) == {"x": 5}
        rec = r.record()
        assert rec is not None
        assert rec["status"] == "success" and rec["result"] == {"x": 5}
        assert rec["host"] == socket.gethostname() and rec["pid"] == os.getpid()
        assert rec["worker"].endswith(f":{os.getpid()}") and rec["thread"]
        assert rec["function"].endswith("work") and rec["queue"] == work.queue
        assert rec["args"] == [5] and rec["kwargs"] == {"label": "b"}
        assert rec["attempt"] == 0 and rec["delivery_count"] == 1
        assert rec["published_at"] <= rec["started_at"] <= rec["finished_at"]
        assert rec["duration"] == pytest.approx(rec["finished_at"] - rec["started_at"])
    finally:
        release.set()
        work.stop()
        REGISTRY.pop(work.queue, None)


def test_failure_record_has_type_message_traceback(broker: str) -> None:
    @boost(q(), results=True, **_params(broker))
    def boom(x: int) -> None:
        raise KeyError(f"missing {x}")

    r = boom.push(3)
    boom.consume()
    try:
        with pytest.raises(TaskFailed) as info:
            r.get(10)
        assert info.value.exc_type == "KeyError" and "missing 3" in info.value.remote_message
        rec = r.record()
        assert rec is not None and rec["status"] == "failure"
        assert rec["error"]["type"] == "KeyError"
        assert "missing 3" in rec["error"]["message"]
        assert "Traceback" in rec["error"]["traceback"] and "boom" in rec["error"]["traceback"]
        assert r.get(1, propagate=False) is None
    finally:
        boom.stop()
        REGISTRY.pop(boom.queue, None)


def test_get_timeout_await_then_and_wait_all(broker: str) -> None:
    @boost(q(), results=True, workers=4, **_params(broker))
    def sq(x: int) -> int:
        if x < 0:
            raise ValueError("negative")
        time.sleep(0.01)
        return x * x

    pending = sq.push(2)
    with pytest.raises(ResultTimeout):  # nobody consumes yet
        pending.get(0.3)
    sq.consume()
    try:
        assert pending.get(10) == 4
        rs = [sq.push(i) for i in range(10)]
        assert wait_all(rs, timeout=20) == [i * i for i in range(10)]
        bad = sq.push(-1)
        with pytest.raises(TaskFailed):
            wait_all([sq.push(1), bad], timeout=20)
        mixed = wait_all([sq.push(3), bad], timeout=20, return_exceptions=True)
        assert mixed[0] == 9 and isinstance(mixed[1], TaskFailed)

        async def main() -> list[object]:
            one = await sq.push(6)
            many = await await_all([sq.push(7), sq.push(8)], timeout=20)
            return [one, *many]

        assert asyncio.run(main()) == [36, 49, 64]

        fut = sq.push(5).then(lambda v: v + 1)
        assert fut.result(10) == 26
        err = sq.push(-1).then(lambda v: v, on_error=lambda e: f"failed: {type(e).__name__}")
        assert err.result(10) == "failed: TaskFailed"
        unhandled = sq.push(-1).then(lambda v: v)
        assert isinstance(unhandled.exception(10), TaskFailed)
    finally:
        sq.stop()
        REGISTRY.pop(sq.queue, None)


def test_get_without_results_fails_fast() -> None:
    @boost(q(), broker="memory")
    def f(x: int) -> int:
        return x

    r = f.push(1)
    t0 = time.monotonic()
    with pytest.raises(ResultsNotEnabled, match="results=True"):
        r.get(timeout=60)
    with pytest.raises(ResultsNotEnabled):
        r.then(print)
    assert time.monotonic() - t0 < 1
    REGISTRY.pop(f.queue, None)


_MOD = """
from boostkernel import boost

@boost({queue!r}, broker="sqlite", results=True)
def mul(x: int, y: int) -> int:
    return x * y
"""


def test_result_cli_shows_the_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOOSTKERNEL_DATA_DIR", str(tmp_path))
    queue = q()
    mod = tmp_path / f"mod_{queue}.py"
    mod.write_text(textwrap.dedent(_MOD.format(queue=queue)))

    @boost(queue, broker="sqlite", results=True)
    def mul(x: int, y: int) -> int:
        return x * y

    r = mul.push(6, 7)
    mul.consume()
    try:
        assert r.get(10) == 42
    finally:
        mul.stop()
        REGISTRY.pop(queue, None)
    env = {**os.environ, "BOOSTKERNEL_DATA_DIR": str(tmp_path)}
    cmd = [sys.executable, "-c", "from boostkernel.cli import main; main()", "result", queue, r.task_id, "-m", str(mod)]
    out = subprocess.run(cmd, env=env, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    rec = json.loads(out.stdout)
    assert rec["status"] == "success" and rec["result"] == 42 and rec["args"] == [6, 7]
    unknown = subprocess.run(cmd[:-3] + [str(uuid.uuid4()), "-m", str(mod)], env=env, capture_output=True, timeout=60)
    assert b"pending" in unknown.stdout
