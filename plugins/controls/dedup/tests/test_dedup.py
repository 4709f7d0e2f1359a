"""The dedup control on real brokers (SQLite; Redis when reachable): one execution per identical call."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from boostkernel_dedup import dedup_key, forget

from boostkernel import Booster, ConfigError, TaskOptions
from boostkernel.testing.control_contract import ControlContract
from boostkernel.testing.helpers import wait_until


class TestDedup(ControlContract):
    control = "dedup"
    on_params = {"dedup": True}
    invalid_params = [{"dedup_ttl": 10}, {"dedup": True, "dedup_ttl": -1}, {"dedup": True, "dedup_busy_delay": -1.0}]

    def test_same_arguments_twice_run_once(self, make_booster: Callable[..., Booster[Any, Any]]) -> None:
        runs: list[tuple[int, int]] = []

        def add(x: int, y: int) -> int:
            runs.append((x, y))
            return x + y

        b = make_booster(add, dedup=True, results=True).consume()
        r1 = b.push(1, 2)
        assert r1.get(15) == 3
        r2 = b.push(1, y=2)  # the same call, spelled differently
        r3 = b.push(x=1, y=2)
        assert r2.get(15) == 3  # a duplicate returns the result of the run it duplicates
        assert r3.get(15) == 3
        assert runs == [(1, 2)]
        rec = r2.record()
        assert rec is not None and rec["status"] == "duplicate" and rec["duplicate_of"] == r1.task_id
        b.push(2, 2).get(15)  # different arguments still run
        assert runs == [(1, 2), (2, 2)]

    def test_ttl_lets_it_run_again(self, make_booster: Callable[..., Booster[Any, Any]]) -> None:
        runs: list[int] = []
        b = make_booster(lambda x: runs.append(x), dedup=True, dedup_ttl=1.0, results=True).consume()
        b.push(7).get(15)
        assert b.push(7).get(15) is None and runs == [7]
        time.sleep(1.2)  # past the TTL window: the marker is gone
        r = b.push(7)
        r.get(15)
        assert runs == [7, 7]
        assert r.record()["status"] == "success"  # type: ignore[index]

    def test_a_failed_run_is_not_marked(self, make_booster: Callable[..., Booster[Any, Any]]) -> None:
        attempts: list[int] = []

        def flaky(x: int) -> int:
            attempts.append(x)
            if len(attempts) == 1:
                raise RuntimeError("first call fails")
            return x * 10

        b = make_booster(flaky, dedup=True, results=True).consume()
        first = b.push(5)
        rec = first.record(timeout=15)
        assert rec is not None and rec["status"] == "failure"
        assert b.store.get(dedup_key(b, 5)) is None  # not marked
        assert b.store.get(dedup_key(b, 5) + ":claim") is None  # and the claim was released
        assert b.push(5).get(15) == 50  # so the same call runs again
        assert b.push(5).get(15) == 50  # and now it is a duplicate
        assert attempts == [5, 5]

    def test_two_identical_messages_in_flight_run_once(self, make_booster: Callable[..., Booster[Any, Any]]) -> None:
        running = threading.Event()
        release = threading.Event()
        runs: list[int] = []

        def slow(x: int) -> int:
            runs.append(x)
            running.set()
            release.wait(10)
            return x

        b = make_booster(slow, dedup=True, results=True, workers=4, dedup_busy_delay=0.2)
        r1 = b.push(3)
        b.consume()
        assert running.wait(10)
        r2 = b.push(3)  # identical, while the first runs
        time.sleep(0.6)  # the second is fetched, finds the claim taken and goes back to the queue
        assert runs == [3]
        release.set()
        assert r1.get(15) == 3
        assert r2.get(15) == 3
        rec2 = r2.record()
        assert rec2 is not None and rec2["status"] == "duplicate"
        assert runs == [3]

    def test_in_flight_copy_runs_when_the_first_fails(self, make_booster: Callable[..., Booster[Any, Any]]) -> None:
        running = threading.Event()
        release = threading.Event()
        runs: list[int] = []

        def fail_first(x: int) -> int:
            runs.append(x)
            if len(runs) == 1:
                running.set()
                release.wait(10)
                raise ValueError("boom")
            return x

        b = make_booster(fail_first, dedup=True, results=True, workers=4, dedup_busy_delay=0.2)
        b.push(4)
        b.consume()
        assert running.wait(10)
        r2 = b.push(4)
        time.sleep(0.5)
        release.set()
        assert r2.get(15) == 4  # the waiting copy ran, because the first did not succeed
        assert runs == [4, 4]

    def test_dedup_key_option(self, make_booster: Callable[..., Booster[Any, Any]]) -> None:
        runs: list[int] = []
        b = make_booster(lambda x: runs.append(x), dedup=True, results=True).consume()
        b.publish({"x": 1}, TaskOptions(dedup_key="order-42")).get(15)
        b.publish({"x": 2}, TaskOptions(dedup_key="order-42")).get(15)  # other args, same key: skipped
        b.publish({"x": 1}).get(15)  # no key: the arguments decide (not yet run without a key)
        assert runs == [1, 1]

    def test_forget_lets_a_call_run_again(self, make_booster: Callable[..., Booster[Any, Any]]) -> None:
        runs: list[int] = []
        b = make_booster(lambda x: runs.append(x), dedup=True, results=True).consume()
        b.push(9).get(15)
        assert forget(b, 9) is True
        b.push(9).get(15)
        assert runs == [9, 9]

    def test_dedup_key_option_needs_the_control(self, make_booster: Callable[..., Booster[Any, Any]]) -> None:
        b = make_booster(lambda x: None)
        with pytest.raises(ConfigError, match="dedup=True"):
            b.publish({"x": 1}, TaskOptions(dedup_key="k"))

    def test_many_concurrent_duplicates_one_run(self, make_booster: Callable[..., Booster[Any, Any]]) -> None:
        runs: list[int] = []
        lock = threading.Lock()

        def task(x: int) -> None:
            with lock:
                runs.append(x)
            time.sleep(0.05)

        b = make_booster(task, dedup=True, workers=8, dedup_busy_delay=0.1)
        for _ in range(3):
            b.push_many([(i,) for i in range(5)] * 4)  # 20 messages, 5 distinct calls, 3 waves
        b.consume()
        assert wait_until(lambda: b.count() == 0 and len(runs) >= 5, 30)
        time.sleep(0.5)
        assert sorted(runs) == [0, 1, 2, 3, 4]
