from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from click.testing import CliRunner

from boostkernel.testing import ControlContract, wait_until
from boostkernel.testing.control_contract import broker_params, on_brokers


def _cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-c", "from boostkernel.cli import main; main()", *args],
                          capture_output=True, env=os.environ.copy(), timeout=60)


class TestPause(ControlContract):
    control = "pause"
    on_params = {"pausable": True}

    @pytest.mark.serial  # "no task starts more than 1 s after pause()": bounded in time, run alone
    def test_pause_and_resume_from_another_process(self, make_booster: Any, broker_name: str) -> None:
        starts: list[float] = []
        lock = threading.Lock()

        def task(i: int) -> None:
            with lock:
                starts.append(time.time())

        b = make_booster(task, pausable=True, qps=50)
        b.push_many([(i,) for i in range(400)])
        assert self.run_until(b, lambda: len(starts) >= 10, 10)
        url = broker_params(broker_name).get("broker_url")
        conn = ["--broker", broker_name] + (["--broker-url", url] if url else [])
        out = _cli("pause", b.queue, *conn)
        assert out.returncode == 0, out.stderr.decode()
        paused_at = time.time()
        assert b.is_paused()
        time.sleep(1.2)
        with lock:
            late = [t for t in starts if t > paused_at + 1.0]
            n_paused = len(starts)
        assert late == [], f"{len(late)} task(s) started more than 1 s after pause()"
        time.sleep(0.6)
        assert len(starts) == n_paused, "tasks started while paused"
        out = _cli("resume", b.queue, *conn)
        assert out.returncode == 0, out.stderr.decode()
        resumed_at = time.time()
        assert wait_until(lambda: len(starts) > n_paused, 5)
        assert min(t for t in starts if t > paused_at) - resumed_at < 1.0

    def test_flag_is_read_at_most_every_half_second(self, make_booster: Any) -> None:
        done: list[int] = []
        b = make_booster(lambda i: done.append(i), pausable=True, workers=4)
        store = b.store
        reads = {"n": 0}
        original_get = store.get

        def counting_get(key: str) -> Any:
            if key.startswith("bk:paused:"):
                reads["n"] += 1
            return original_get(key)

        store.get = counting_get  # count the real store's reads of the pause flag
        b.push_many([(i,) for i in range(2000)])
        t0 = time.monotonic()
        assert self.run_until(b, lambda: len(done) == 2000, 30)
        elapsed = time.monotonic() - t0
        assert reads["n"] <= elapsed / 0.5 + 2, f"{reads['n']} flag reads for 2000 messages in {elapsed:.1f}s"

    @on_brokers("sqlite")
    def test_booster_api_pause_resume(self, make_booster: Any) -> None:
        from boostkernel.booster import REGISTRY
        from boostkernel.cli.main import _load_plugin_commands, cli

        done: list[int] = []
        b = make_booster(lambda i: done.append(i), pausable=True)
        b.pause()
        b.push(1)
        b.consume()
        time.sleep(1.2)
        assert done == []
        REGISTRY.pop(b.queue)
        _load_plugin_commands()
        out = CliRunner().invoke(cli, ["resume", b.queue])
        REGISTRY[b.queue] = b
        assert out.exit_code == 0 and "resumed" in out.output, out.output
        assert wait_until(lambda: done == [1], 3)
