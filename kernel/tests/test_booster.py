"""The user API of @boost on the memory and sqlite brokers (no external service)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest

from boostkernel import (
    AsyncResult,
    DeadLetter,
    Requeue,
    ResultsNotEnabled,
    TaskFailed,
    TaskOptions,
    boost,
    current_task,
    wait_all,
)
from boostkernel.errors import ConfigError, PluginNotInstalled
from boostkernel.testing import wait_until


def q() -> str:
    return f"k_{uuid.uuid4().hex[:10]}"


def test_plain_call_runs_locally() -> None:
    @boost(q(), broker="memory")
    def add(x: int, y: int) -> int:
        return x + y

    assert add(1, 2) == 3


@pytest.mark.parametrize("broker", ["memory", "sqlite"])
def test_push_consume_and_results(broker: str) -> None:
    @boost(q(), broker=broker, results=True, workers=8)
    def add(x: int, y: int) -> int:
        return x + y

    rs = [add.push(i, y=i) for i in range(50)]
    add.consume()
    try:
        assert wait_all(rs, timeout=20) == [2 * i for i in range(50)]
        assert rs[0].status == "success"
        rec = rs[0].record()
        assert rec is not None and rec["worker"] and rec["duration"] >= 0
    finally:
        add.stop()


def test_get_without_results_fails_at_once() -> None:
    @boost(q(), broker="memory")
    def f() -> None:
        pass

    r = f.push()
    t0 = time.monotonic()
    with pytest.raises(ResultsNotEnabled, match="results=True"):
        r.get(timeout=30)
    assert time.monotonic() - t0 < 1


def test_failed_task_raises_task_failed_and_is_dead_lettered() -> None:
    @boost(q(), broker="memory", results=True)
    def boom(x: int) -> None:
        raise ValueError(f"bad {x}")

    r = boom.push(3)
    boom.consume()
    try:
        with pytest.raises(TaskFailed, match="ValueError: bad 3") as info:
            r.get(timeout=10)
        assert "ValueError" in (info.value.traceback or "")
        assert wait_until(lambda: len(boom.dead_letters()) == 1)
        assert "ValueError: bad 3" in boom.dead_letters()[0].reason
    finally:
        boom.stop()


def test_publish_with_options_and_push_many() -> None:
    @boost(q(), broker="memory", results=True)
    def echo(x: int = 0) -> int:
        return x

    delayed = echo.publish({"x": 7}, TaskOptions(countdown=1.0))
    many = echo.push_many([(1,), {"x": 2}, [3]])
    assert echo.count() == 4
    echo.consume()
    try:
        assert wait_all(many, timeout=10) == [1, 2, 3]
        assert not delayed.ready()
        t0 = time.monotonic()
        assert delayed.get(timeout=10) == 7
        assert time.monotonic() - t0 > 0.3
    finally:
        echo.stop()


def test_count_and_purge() -> None:
    @boost(q(), broker="sqlite")
    def f(x: int) -> None:
        pass

    f.push_many([(i,) for i in range(25)])
    assert f.count() == 25
    assert f.purge() == 25
    assert f.count() == 0


def test_wrong_arguments_fail_at_publish_with_signature() -> None:
    @boost(q(), broker="memory")
    def f(x: int, *, y: int) -> None:
        pass

    with pytest.raises(TypeError, match=r"f\(x: int, \*, y: int\)"):
        f.push(1, 2)


def test_async_function_needs_asyncio_concurrency() -> None:
    with pytest.raises(ConfigError, match="concurrency='asyncio'"):
        @boost(q(), broker="memory", concurrency="threads")
        async def f() -> None:
            pass


def test_unknown_broker_names_no_extra_that_does_not_exist() -> None:
    with pytest.raises(PluginNotInstalled, match=r"not a plugin of this project") as info:
        @boost(q(), broker="nosuch")
        def f() -> None:
            pass
    assert "boostkernel[" not in str(info.value)


def test_asyncio_mode_runs_coroutines_and_await_result() -> None:
    @boost(q(), broker="memory", concurrency="asyncio", workers=50, results=True)
    async def slow_double(x: int) -> int:
        await asyncio.sleep(0.2)
        return 2 * x

    async def main() -> list[int]:
        rs = [await slow_double.aio_push(i) for i in range(50)]
        return [await r for r in rs]

    slow_double.consume()
    try:
        t0 = time.monotonic()
        assert asyncio.run(main()) == [2 * i for i in range(50)]
        assert time.monotonic() - t0 < 5, "50 sleeps of 0.2 s ran concurrently"
    finally:
        slow_double.stop()


def test_current_task_context_in_threads() -> None:
    seen: dict[str, str] = {}

    @boost(q(), broker="memory", results=True)
    def who() -> str:
        ctx = current_task()
        assert ctx is not None
        seen[ctx.task_id] = threading.current_thread().name
        return ctx.task_id

    r = who.push()
    who.consume()
    try:
        assert r.get(timeout=10) == r.task_id
        assert r.task_id in seen
    finally:
        who.stop()
    assert current_task() is None


def test_signals_requeue_and_dead_letter() -> None:
    calls: list[int] = []

    @boost(q(), broker="memory")
    def flaky(x: int) -> None:
        calls.append(x)
        if x == 1 and calls.count(1) < 3:
            raise Requeue()
        if x == 2:
            raise DeadLetter("not for us")

    flaky.push(1)
    flaky.push(2)
    flaky.consume()
    try:
        assert wait_until(lambda: calls.count(1) == 3 and len(flaky.dead_letters()) == 1)
        assert flaky.dead_letters()[0].reason == "not for us"
    finally:
        flaky.stop()


def test_then_callback_and_result_handle_by_id() -> None:
    got = threading.Event()
    box: list[int] = []

    @boost(q(), broker="memory", results=True)
    def sq(x: int) -> int:
        return x * x

    r = sq.push(9)
    r.then(lambda v: (box.append(v), got.set()))
    sq.consume()
    try:
        assert got.wait(10) and box == [81]
        assert isinstance(sq.result(r.task_id), AsyncResult)
        assert sq.result(r.task_id).get(1) == 81
    finally:
        sq.stop()


def test_queue_is_bound_to_one_function() -> None:
    name = q()

    @boost(name, broker="memory")
    def a() -> None:
        pass

    with pytest.raises(ConfigError, match="already used"):
        @boost(name, broker="memory")
        def b() -> None:
            pass
