"""End-to-end contract of *framework brokers* (celery, dramatiq, huey, rq …).

A framework broker exposes no raw fetch/ack, so :class:`~boostkernel.testing.BrokerContract` does not
apply. This mixin checks what a user relies on instead: push → the framework's worker (started by
``consume()``) → result in ``AsyncResult``; kwargs and task ids; async functions; countdown; retries
(success after failures, exhaustion, ``retry_on``); a failing task's error in ``AsyncResult``; count and
purge where the framework allows; ``stop()``; decoration-time errors for parameters it cannot honour.

Subclass it and override one fixture::

    class TestCeleryRedis(FrameworkContract):
        unsupported = {"timeout": 5}

        @pytest.fixture
        def framework_params(self):
            return {"broker": "celery", "broker_url": "redis://127.0.0.1:6379/15"}

Tests are gated by the broker class's declared capabilities (``count``, ``purge``) and by its
``framework_params`` (``retry_on`` …); honest gaps go into ``expected_failures`` (strict xfail).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ..booster import Booster, boost
from ..consumer import current_task
from ..errors import ConfigError, TaskFailed
from ..params import TaskOptions
from ..plugins import get_plugins
from .contracts import _Contract, requires
from .helpers import wait_until

MakeBooster = Callable[..., Booster[Any, Any]]


class _Calls:
    """A thread-safe call counter shared by a test and the task it runs."""

    def __init__(self) -> None:
        self.n = 0
        self._lock = threading.Lock()

    def bump(self) -> int:
        with self._lock:
            self.n += 1
            return self.n


class FrameworkContract(_Contract):
    """Override ``framework_params``: a fixture returning the ``@boost`` keywords selecting the framework
    and its broker URL, e.g. ``{"broker": "dramatiq", "broker_url": "amqp://guest:guest@127.0.0.1:5672/"}``."""

    #: Seconds to wait for a result (framework workers start and poll at their own pace).
    result_timeout: float = 20.0
    #: Parameters this framework must refuse at decoration time: ``{"field": value}``.
    unsupported: dict[str, Any] = {}

    @pytest.fixture
    def framework_params(self) -> dict[str, Any]:
        raise NotImplementedError("override the 'framework_params' fixture in your test class")

    @pytest.fixture
    def broker_class(self, framework_params: dict[str, Any]) -> Any:
        return get_plugins().get("broker", get_plugins().resolve_broker_name(framework_params["broker"])).load()

    @pytest.fixture
    def make_booster(self, request: pytest.FixtureRequest, framework_params: dict[str, Any], broker_class: Any,
                     tmp_path: Any) -> Iterator[MakeBooster]:
        """``make_booster(fn, **params)``: a booster of ``fn`` on a fresh queue of the framework under test."""
        self._gate(request, broker_class.capabilities)
        for name in getattr(request.function, "_params", ()):
            if name not in broker_class.framework_params:
                pytest.skip(f"{broker_class.name} does not map {name!r}")
        made: list[Booster[Any, Any]] = []

        def make(fn: Callable[..., Any], **params: Any) -> Booster[Any, Any]:
            queue = f"fc_{request.node.name[:30]}_{uuid.uuid4().hex[:8]}".replace("[", "_").replace("]", "_")
            kw = {"data_dir": str(tmp_path), **framework_params, **params}
            b: Booster[Any, Any] = boost(queue, **kw)(fn)
            made.append(b)
            return b

        yield make
        for b in made:
            b.stop(10)
            if broker_class.capabilities.purge:
                try:
                    b.purge()
                except Exception:  # noqa: BLE001 - cleanup only
                    pass

    def _record(self, booster: Booster[Any, Any], task_id: str) -> dict[str, Any]:
        rec = booster.store.get_result(task_id, self.result_timeout)
        assert rec is not None, f"no record for {task_id}"
        return rec

    # --- tests ------------------------------------------------------------------------------------
    def test_declares_a_framework_broker(self, broker_class: Any, framework_params: dict[str, Any]) -> None:
        caps = broker_class.capabilities
        assert caps.needs_own_worker is True
        broker = broker_class("fc_caps", framework_params.get("broker_url"))
        with pytest.raises(NotImplementedError, match="own worker"):
            broker.fetch(1, 0.1)
        for name in ("setup_booster", "start_worker", "run_worker"):
            assert callable(getattr(broker_class, name, None)), name

    def test_push_consume_result(self, make_booster: MakeBooster) -> None:
        def add(x: int, y: int) -> int:
            return x + y

        b = make_booster(add, results=True)
        b.consume()
        results = [b.push(i, 10) for i in range(5)]
        assert [r.get(self.result_timeout) for r in results] == [10, 11, 12, 13, 14]
        rec = results[0].record()
        assert rec is not None and rec["status"] == "success" and rec["queue"] == b.queue

    def test_publish_kwargs_task_id_and_current_task(self, make_booster: MakeBooster) -> None:
        def echo(word: str, times: int = 1) -> dict[str, Any]:
            ctx = current_task()
            return {"text": word * times, "task_id": ctx.task_id if ctx else None}

        b = make_booster(echo, results=True)
        b.consume()
        tid = f"fixed-{uuid.uuid4().hex}"
        r = b.publish({"word": "ab", "times": 3}, TaskOptions(task_id=tid))
        assert r.task_id == tid
        assert r.get(self.result_timeout) == {"text": "ababab", "task_id": tid}

    def test_async_function(self, make_booster: MakeBooster) -> None:
        async def twice(x: int) -> int:
            import asyncio

            await asyncio.sleep(0.01)
            return 2 * x

        b = make_booster(twice, results=True)
        b.consume()
        assert b.push(21).get(self.result_timeout) == 42

    def test_failing_task_error_in_async_result(self, make_booster: MakeBooster) -> None:
        def explode(code: int) -> None:
            raise ValueError(f"boom {code}")

        b = make_booster(explode, results=True)
        b.consume()
        r = b.push(42)
        with pytest.raises(TaskFailed) as info:
            r.get(self.result_timeout)
        assert info.value.exc_type == "ValueError"
        assert info.value.remote_message == "boom 42"
        assert info.value.traceback and "boom 42" in info.value.traceback
        assert r.status == "failure"

    def test_retries_until_success(self, make_booster: MakeBooster) -> None:
        calls = _Calls()

        def flaky() -> int:
            n = calls.bump()
            if n < 3:
                raise ConnectionError(f"attempt {n}")
            ctx = current_task()
            return ctx.attempt if ctx else -1

        b = make_booster(flaky, results=True, max_retries=2)
        b.consume()
        r = b.push()
        assert r.get(self.result_timeout) == 2  # the task saw its attempt number
        assert calls.n == 3
        rec = r.record()
        assert rec is not None and rec["attempt"] == 2

    def test_retries_exhausted_reports_the_failure(self, make_booster: MakeBooster) -> None:
        calls = _Calls()

        def always_fails() -> None:
            raise RuntimeError(f"failure {calls.bump()}")

        b = make_booster(always_fails, results=True, max_retries=1)
        b.consume()
        r = b.push()
        with pytest.raises(TaskFailed) as info:
            r.get(self.result_timeout)
        assert info.value.exc_type == "RuntimeError"
        assert info.value.remote_message == "failure 2"
        assert calls.n == 2

    def test_retry_on_limits_what_is_retried(self, make_booster: MakeBooster) -> None:
        calls = _Calls()

        def wrong_kind() -> None:
            calls.bump()
            raise ValueError("not retryable")

        b = make_booster(wrong_kind, results=True, max_retries=3, retry_on=(ConnectionError,))
        b.consume()
        with pytest.raises(TaskFailed, match="not retryable"):
            b.push().get(self.result_timeout)
        assert calls.n == 1

    test_retry_on_limits_what_is_retried._params = ("retry_on",)  # type: ignore[attr-defined]

    def test_countdown_delays_the_run(self, make_booster: MakeBooster) -> None:
        def stamp() -> float:
            return time.time()

        b = make_booster(stamp, results=True)
        b.consume()
        t0 = time.time()
        r = b.publish({}, TaskOptions(countdown=2.0))
        ran_at = r.get(self.result_timeout)
        assert ran_at >= t0 + 2.0 - 0.05, f"ran {ran_at - t0:.2f}s after publishing, countdown was 2s"
        rec = r.record()
        assert rec is not None and rec["started_at"] >= t0 + 1.95

    @requires("count", "purge")
    def test_count_and_purge(self, make_booster: MakeBooster) -> None:
        def noop(i: int) -> int:
            return i

        b = make_booster(noop)
        for i in range(3):
            b.push(i)
        assert wait_until(lambda: b.count() == 3, 5), f"count() = {b.count()}"
        assert b.purge() == 3
        assert b.count() == 0

    @requires("count")
    def test_stop_stops_the_worker(self, make_booster: MakeBooster) -> None:
        def ident(i: int) -> int:
            return i

        b = make_booster(ident, results=True)
        b.consume()
        assert b.push(1).get(self.result_timeout) == 1
        b.stop(10)
        assert b._consumer is not None and not b._consumer.running
        b.push(2)
        assert wait_until(lambda: b.count() == 1, 5), f"count() = {b.count()} after stop"
        b.consume()  # starts again and drains the queue
        assert wait_until(lambda: b.count() == 0, self.result_timeout)

    def test_unsupported_parameters_fail_at_decoration(self, framework_params: dict[str, Any]) -> None:
        if not self.unsupported:
            pytest.skip("this framework declares no unsupported parameter")
        for name, value in self.unsupported.items():
            with pytest.raises(ConfigError, match=name):
                boost(f"fc_bad_{uuid.uuid4().hex[:8]}", **{**framework_params, name: value})(lambda: None)

    def test_unknown_broker_option_fails_at_decoration(self, framework_params: dict[str, Any]) -> None:
        with pytest.raises(ConfigError, match="no_such_option"):
            boost(f"fc_bad_{uuid.uuid4().hex[:8]}",
                  **{**framework_params, "broker_options": {"no_such_option": 1}})(lambda: None)
