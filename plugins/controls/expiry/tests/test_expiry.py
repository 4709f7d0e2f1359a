"""The expiry control on real brokers: old messages are dropped (status ``expired``), fresh ones run."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from boostkernel import Booster, ConfigError, TaskFailed, TaskOptions
from boostkernel.testing.control_contract import ControlContract
from boostkernel.testing.helpers import wait_until


class TestExpiry(ControlContract):
    control = "expiry"
    on_params = {"expires": 60}
    invalid_params = [{"expires": 0}, {"expires": -5}, {"expires": "soon"}]

    def test_old_messages_are_dropped_fresh_ones_run(self, make_booster: Callable[..., Booster[Any, Any]]) -> None:
        runs: list[int] = []
        b = make_booster(lambda x: runs.append(x) or x, expires=0.5, results=True)
        old = b.push(1)
        time.sleep(0.8)  # older than 0.5 s before any worker sees it
        b.consume()
        with pytest.raises(TaskFailed) as info:
            old.get(15)
        assert info.value.exc_type == "expired"
        rec = old.record()
        assert rec is not None and rec["status"] == "expired" and "expires after 0.5s" in rec["reason"]
        assert b.push(2).get(15) == 2
        assert runs == [2]
        assert wait_until(lambda: b.count() == 0, 5)  # the expired one was acknowledged, not left behind

    def test_per_message_override(self, make_booster: Callable[..., Booster[Any, Any]]) -> None:
        runs: list[int] = []
        b = make_booster(lambda x: runs.append(x), expires=3600, results=True)
        short = b.publish({"x": 1}, TaskOptions(expires=0.3))
        long_ = b.publish({"x": 2})
        time.sleep(0.6)
        b.consume()
        assert short.record(timeout=15)["status"] == "expired"  # type: ignore[index]
        long_.get(15)
        assert runs == [2]

    def test_delayed_message_ages_from_its_eta(self, make_booster: Callable[..., Booster[Any, Any]]) -> None:
        runs: list[int] = []
        b = make_booster(lambda x: runs.append(x), expires=0.5, results=True).consume()
        r = b.publish({"x": 5}, TaskOptions(countdown=1.0))  # waits 1 s on purpose: not "old" when due
        r.get(15)
        assert runs == [5]

    def test_expires_option_needs_the_control(self, make_booster: Callable[..., Booster[Any, Any]]) -> None:
        b = make_booster(lambda x: None)
        with pytest.raises(ConfigError, match="expires="):
            b.publish({"x": 1}, TaskOptions(expires=5))
