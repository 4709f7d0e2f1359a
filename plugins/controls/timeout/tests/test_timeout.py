from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from boostkernel import ConfigError, TaskOptions, boost, current_task
from boostkernel.testing import ControlContract, wait_until


class Ticker:
    def __init__(self) -> None:
        self.ticks = 0
        self.quick: list[str] = []
        self.task_ids: list[str | None] = []


def _dead(b: Any) -> list[Any]:
    return list(b.dead_letters())


class TestTimeoutThreads(ControlContract):
    control = "timeout"
    on_params = {"timeout": 5.0}
    invalid_params = [{"timeout": 0}, {"timeout": -2}, {"timeout": 1.0, "concurrency": "solo"}]

    def test_two_second_timeout_stops_a_sixty_second_function(self, make_booster: Any) -> None:
        t = Ticker()

        def work(kind: str) -> None:
            ctx = current_task()
            t.task_ids.append(ctx.task_id if ctx else None)
            if kind == "quick":
                t.quick.append(kind)
                return
            for _ in range(600):  # 60 s of Python-level work
                t.ticks += 1
                time.sleep(0.1)

        b = make_booster(work, timeout=2.0, workers=1)
        long = b.push("long")
        b.push("quick")
        t0 = time.monotonic()
        assert self.run_until(b, lambda: len(_dead(b)) == 1 and t.quick == ["quick"], 10)
        assert time.monotonic() - t0 < 4.0
        dead = _dead(b)[0]
        assert dead.id == long.task_id and "TaskTimeout" in dead.reason
        stopped_at = t.ticks
        time.sleep(0.5)
        assert t.ticks == stopped_at, "the timed-out function kept running"
        assert t.task_ids[0] == long.task_id  # current_task() works inside the helper thread

    def test_blocking_c_call_frees_the_worker_at_the_deadline(self, make_booster: Any) -> None:
        quick: list[float] = []

        def work(kind: str) -> None:
            if kind == "quick":
                quick.append(time.monotonic())
                return
            time.sleep(60)  # one C call: CPython cannot interrupt it, but the worker moves on

        b = make_booster(work, timeout=1.0, workers=1)
        b.push("long")
        b.push("quick")
        t0 = time.monotonic()
        assert self.run_until(b, lambda: len(quick) == 1, 10)
        assert quick[0] - t0 < 3.0

    def test_per_message_timeout_override(self, make_booster: Any) -> None:
        done: list[str] = []

        def work(name: str, seconds: float) -> None:
            for _ in range(int(seconds * 20)):
                time.sleep(0.05)
            done.append(name)

        b = make_booster(work, timeout=0.5)
        b.publish({"name": "patient", "seconds": 1.0}, TaskOptions(timeout=3.0))
        b.publish({"name": "default", "seconds": 1.0})
        assert self.run_until(b, lambda: done == ["patient"] and len(_dead(b)) == 1, 10)

    def test_timeout_then_retry(self, make_booster: Any) -> None:
        attempts: list[int] = []

        def work() -> str:
            ctx = current_task()
            assert ctx is not None
            attempts.append(ctx.attempt)
            if ctx.attempt == 0:
                for _ in range(100):
                    time.sleep(0.05)
            return "ok"

        b = make_booster(work, timeout=0.5, max_retries=1)
        b.push()
        assert self.run_until(b, lambda: attempts == [0, 1], 10)
        time.sleep(0.3)
        assert _dead(b) == []


class TestTimeoutAsyncio(ControlContract):
    control = "timeout"
    on_params = {"timeout": 5.0}
    base_params = {"concurrency": "asyncio"}

    def test_async_function_is_cancelled_at_the_deadline(self, make_booster: Any) -> None:
        state = {"cancelled": False, "quick": 0}

        async def work(kind: str) -> None:
            if kind == "quick":
                state["quick"] += 1
                return
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                state["cancelled"] = True
                raise

        b = make_booster(work, timeout=2.0, workers=1)
        long = b.push("long")
        b.push("quick")
        t0 = time.monotonic()
        assert self.run_until(b, lambda: len(_dead(b)) == 1 and state["quick"] == 1, 10)
        assert time.monotonic() - t0 < 4.0
        assert state["cancelled"] is True
        assert _dead(b)[0].id == long.task_id and "TaskTimeout" in _dead(b)[0].reason

    def test_sync_function_under_asyncio_frees_the_slot(self, make_booster: Any) -> None:
        quick: list[int] = []

        def work(kind: str) -> None:
            if kind == "quick":
                quick.append(1)
                return
            time.sleep(5)

        b = make_booster(work, timeout=1.0, workers=1)
        b.push("long")
        b.push("quick")
        assert self.run_until(b, lambda: quick == [1] and len(_dead(b)) == 1, 8)


def test_solo_cannot_time_out_and_says_why() -> None:
    with pytest.raises(ConfigError, match="cannot stop it"):
        boost("timeout_solo_refused", concurrency="solo", timeout=1.0)(lambda: None)


def test_timeout_in_process_overlay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOOSTKERNEL_DATA_DIR", str(tmp_path))
    queue = f"timeout_procs_{os.getpid()}_{threading.get_ident() % 10000}"
    out = tmp_path / "out.txt"

    def work(kind: str) -> None:  # the publisher's view of the same queue
        raise AssertionError("runs in the worker processes only")

    work.__qualname__ = "work"
    pub = boost(queue)(work)
    long = pub.push("long")
    pub.push("quick")
    env = {**os.environ, "BOOSTKERNEL_DATA_DIR": str(tmp_path), "TM_QUEUE": queue, "TM_OUT": str(out)}
    p = subprocess.Popen([sys.executable, str(Path(__file__).with_name("tm_worker.py"))],
                         stdout=subprocess.PIPE, env=env)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == b"ready"
        assert wait_until(lambda: len(pub.dead_letters()) == 1, 20)
        dead = pub.dead_letters()[0]
        assert dead.id == long.task_id and "TaskTimeout" in dead.reason
        assert wait_until(lambda: "quick" in out.read_text(), 10)
        ticks = out.read_text().count("tick")
        time.sleep(0.6)
        assert out.read_text().count("tick") == ticks, "the timed-out function kept running in the child"
        assert 15 <= ticks <= 30  # stopped after about 2 s of 0.1 s ticks, not 60 s
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        if p.stdout is not None:
            p.stdout.close()
        from boostkernel.booster import REGISTRY

        REGISTRY.pop(queue, None)
        pub.broker.close()
