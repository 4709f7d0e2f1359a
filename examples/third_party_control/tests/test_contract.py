"""The control contract for the example plugin (no xfail), and its behaviour through @boost."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from boostkernel import ConfigError, TaskOptions, boost
from boostkernel.testing import ControlContract


class TestSlowLogContract(ControlContract):
    control = "slowlog"
    on_params = {"slow_after": 0.05}
    invalid_params = [{"slow_after": -1.0}, {"slow_after": "fast"}, {"slow_after": 1.0, "slowlog_keep": 0}]
    brokers = ("sqlite",)

    def test_slow_tasks_are_recorded(self, make_booster: Callable[..., Any]) -> None:
        def nap(seconds: float) -> None:
            time.sleep(seconds)

        b = make_booster(nap, slow_after=0.2, workers=4)
        fast, slow = b.push(0.0), b.push(0.5)
        quick_but_strict = b.publish({"seconds": 0.1}, TaskOptions(overrides={"slow_after": 0.05}))
        assert self.run_until(b, lambda: len(b.slow_tasks()) == 2, timeout=20)
        assert set(b.slow_tasks()) == {slow.task_id, quick_but_strict.task_id}
        assert fast.task_id not in b.slow_tasks()


def test_the_option_is_typed_at_decoration() -> None:
    try:
        boost("slowlog_bad", broker="memory", slow_after="soon")(lambda: None)
    except ConfigError as exc:
        assert "slow_after must be float | None" in str(exc)
    else:
        raise AssertionError("a str slow_after was accepted")


def test_listed_with_its_option() -> None:
    out = subprocess.run([sys.executable, "-m", "boostkernel", "plugins", "list", "--json"],
                         capture_output=True, text=True, check=True, timeout=120)
    row = {r["name"]: r for r in json.loads(out.stdout)}["slowlog"]
    assert row["status"] == "loaded" and row["distribution"] == "boostkernel-example-slowlog"
    options = {o["name"]: o for o in row["capabilities"]["control:slowlog"]["options"]}
    assert options["slow_after"]["type"] == "float | None" and options["slow_after"]["per_message"] is True
