"""A task raising ``Retry`` on a booster without the retry control stops at the kernel's default limit."""

from __future__ import annotations

import threading
import uuid

import pytest

from boostkernel import Outcome, Retry, TaskFailed, boost
from boostkernel.consumer import DEFAULT_RETRY_LIMIT
from boostkernel.testing.helpers import wait_until


def q() -> str:
    return f"rl_{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize("broker", ["memory", "sqlite"])
def test_retry_forever_without_the_retry_control_is_dead_lettered_at_the_default_limit(
        broker: str, tmp_path: object) -> None:
    calls: list[int] = []
    lock = threading.Lock()

    @boost(q(), broker=broker, data_dir=str(tmp_path), results=True)
    def forever(x: int) -> None:
        with lock:
            calls.append(x)
        raise Retry(reason="not yet")

    assert [c.name for c in forever.control_classes] == ["results"]  # no retry control on this booster
    r = forever.push(7)
    forever.consume()
    try:
        assert wait_until(lambda: len(forever.dead_letters()) == 1, timeout=20)
        (dead,) = forever.dead_letters()
        assert f"at most {DEFAULT_RETRY_LIMIT} times" in dead.reason
        assert "max_retries=N" in dead.reason and "BOOSTKERNEL_RETRY_LIMIT" in dead.reason
        with pytest.raises(TaskFailed):
            r.get(timeout=10)
        assert r.record()["status"] == Outcome.DEAD  # type: ignore[index]
        assert len(calls) == DEFAULT_RETRY_LIMIT + 1  # the first run and DEFAULT_RETRY_LIMIT retries
    finally:
        forever.stop()


def test_the_retry_control_owns_the_limit_when_it_is_on() -> None:
    calls: list[int] = []

    @boost(q(), broker="memory", max_retries=DEFAULT_RETRY_LIMIT + 3)
    def flaky() -> None:
        calls.append(1)
        raise Retry(reason="again")

    flaky.push()
    flaky.consume()
    try:
        assert wait_until(lambda: len(flaky.dead_letters()) == 1, timeout=20)
        assert len(calls) == DEFAULT_RETRY_LIMIT + 4  # max_retries decides, not the kernel's default
        assert "retries exhausted" in flaky.dead_letters()[0].reason
    finally:
        flaky.stop()
