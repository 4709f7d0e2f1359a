from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from typing import Any

import pytest
from click.testing import CliRunner

from boostkernel import ConfigError, boost
from boostkernel.testing import ControlContract, wait_until
from boostkernel.testing.control_contract import broker_params, on_brokers

REVOKE_SCRIPT = """
import sys, time
from boostkernel import boost
queue, broker, url, tid = sys.argv[1:5]
params = {"broker": broker}
if url != "-":
    params["broker_url"] = url
def standin(): pass
standin.__qualname__ = "standin_" + queue
b = boost(queue, **params)(standin)
b.store.get("warm-up")  # connect before timing
t = time.time()
b.revoke(tid)
print(repr(t), flush=True)
"""


def _record(b: Any, tid: str) -> dict[str, Any] | None:
    rec = b.store.get_result(tid)
    return rec if rec and rec.get("status") != "running" else None


class _Base(ControlContract):
    control = "cancel"
    on_params = {"cancellable": True}

    def _revoke_from_another_process(self, b: Any, broker_name: str, tid: str) -> float:
        url = broker_params(broker_name).get("broker_url", "-")
        out = subprocess.run([sys.executable, "-c", REVOKE_SCRIPT, b.queue, broker_name, url, tid],
                             capture_output=True, check=True, env=os.environ.copy(), timeout=60)
        return float(out.stdout.split()[-1])


class TestCancelThreads(_Base):
    invalid_params = [{"cancellable": True, "concurrency": "solo"}]

    def test_revoked_pending_task_never_runs(self, make_booster: Any) -> None:
        ran: list[int] = []
        b = make_booster(lambda i: ran.append(i), cancellable=True, results=True)
        r1 = b.push(1)
        b.push(2)
        r1.revoke()
        assert self.run_until(b, lambda: ran == [2] and _record(b, r1.task_id) is not None, 10)
        time.sleep(0.3)
        assert ran == [2]
        assert _record(b, r1.task_id)["status"] == "revoked"  # type: ignore[index]
        assert b.count() == 0 and list(b.dead_letters()) == []

    def test_running_task_cancelled_from_another_process_within_one_second(
            self, make_booster: Any, broker_name: str) -> None:
        state = {"ticks": 0, "started": 0.0}
        quick: list[float] = []

        def work(kind: str) -> None:
            if kind == "quick":
                quick.append(time.time())
                return
            state["started"] = time.time()
            for _ in range(600):  # would run 60 s
                state["ticks"] += 1
                time.sleep(0.05)

        b = make_booster(work, cancellable=True, results=True, workers=1)
        long = b.push("long")
        b.push("quick")
        assert self.run_until(b, lambda: state["ticks"] > 0, 10)
        revoked_at = self._revoke_from_another_process(b, broker_name, long.task_id)
        assert wait_until(lambda: len(quick) == 1, 5)
        rec = b.store.get_result(long.task_id, 5)
        assert rec is not None and rec["status"] == "revoked"
        assert rec["finished_at"] - revoked_at < 1.0, f"took {rec['finished_at'] - revoked_at:.2f}s"
        ticks = state["ticks"]
        time.sleep(0.3)
        assert state["ticks"] == ticks, "the cancelled function kept running"
        assert list(b.dead_letters()) == [] and b.count() == 0

    @on_brokers("sqlite")
    def test_revoke_command(self, make_booster: Any) -> None:
        from boostkernel.booster import REGISTRY
        from boostkernel.cli.main import _load_plugin_commands, cli

        ran: list[int] = []
        b = make_booster(lambda i: ran.append(i), cancellable=True)
        r = b.push(1)
        b.push(2)
        REGISTRY.pop(b.queue)  # the CLI makes its own stand-in booster for the queue
        _load_plugin_commands()
        out = CliRunner().invoke(cli, ["revoke", b.queue, r.task_id])
        assert out.exit_code == 0 and f"revoked {r.task_id}" in out.output, out.output
        REGISTRY[b.queue] = b
        assert self.run_until(b, lambda: ran == [2], 10)
        time.sleep(0.3)
        assert ran == [2]


class TestCancelAsyncio(_Base):
    base_params = {"concurrency": "asyncio"}

    def test_running_coroutine_cancelled_from_another_process_within_one_second(
            self, make_booster: Any, broker_name: str) -> None:
        state = {"running": False, "cancelled": False}

        async def work() -> None:
            state["running"] = True
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                state["cancelled"] = True
                raise

        b = make_booster(work, cancellable=True, results=True)
        r = b.push()
        assert self.run_until(b, lambda: state["running"], 10)
        revoked_at = self._revoke_from_another_process(b, broker_name, r.task_id)
        rec = b.store.get_result(r.task_id, 5)
        assert rec is not None and rec["status"] == "revoked"
        assert rec["finished_at"] - revoked_at < 1.0
        assert state["cancelled"]

    def test_revoked_pending_coroutine_never_runs(self, make_booster: Any) -> None:
        ran: list[int] = []

        async def work(i: int) -> None:
            ran.append(i)

        b = make_booster(work, cancellable=True)
        r1 = b.push(1)
        b.push(2)
        b.revoke(r1.task_id)
        assert self.run_until(b, lambda: ran == [2], 10)
        time.sleep(0.3)
        assert ran == [2]


def test_solo_cannot_cancel_and_says_why() -> None:
    with pytest.raises(ConfigError, match="cannot stop it"):
        boost("cancel_solo_refused", concurrency="solo", cancellable=True)(lambda: None)
