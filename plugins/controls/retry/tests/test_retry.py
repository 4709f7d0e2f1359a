from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from click.testing import CliRunner

from boostkernel import DeadLetter, Requeue, Retry, TaskOptions, current_task
from boostkernel.booster import REGISTRY
from boostkernel.testing import ControlContract, wait_until
from boostkernel.testing.control_contract import on_brokers


class Recorder:
    def __init__(self) -> None:
        self.attempts: list[int] = []
        self.times: list[float] = []
        self.lock = threading.Lock()

    def hit(self) -> int:
        ctx = current_task()
        assert ctx is not None
        with self.lock:
            self.attempts.append(ctx.attempt)
            self.times.append(time.monotonic())
        return ctx.attempt


def _dead(b: Any) -> list[Any]:
    return list(b.dead_letters())


class TestRetry(ControlContract):
    control = "retry"
    on_params = {"max_retries": 2}
    invalid_params = [
        {"max_retries": -1},
        {"retry_mode": "later"},
        {"max_retries": 1, "retry_backoff": -1.0},
        {"max_retries": 1, "retry_on": (ValueError, DeadLetter)},
        {"max_retries": 1, "retry_on": ValueError},
    ]

    def test_worker_mode_backoff_and_attempts(self, make_booster: Any) -> None:
        rec = Recorder()

        def flaky() -> str:
            if rec.hit() < 2:
                raise ConnectionError("not yet")
            return "ok"

        b = make_booster(flaky, max_retries=3, retry_backoff=0.2, retry_jitter=False)
        b.push()
        assert self.run_until(b, lambda: len(rec.attempts) == 3, 15)
        assert rec.attempts == [0, 1, 2]
        gaps = [y - x for x, y in zip(rec.times, rec.times[1:])]
        assert 0.19 <= gaps[0] < 0.6 and 0.39 <= gaps[1] < 0.9, gaps
        time.sleep(0.3)
        assert len(rec.attempts) == 3 and _dead(b) == []

    def test_jitter_stays_within_half_to_full_delay(self, make_booster: Any) -> None:
        from boostkernel_retry.control import RetryControl

        b = make_booster(lambda: None, max_retries=5, retry_backoff=1.0, retry_backoff_max=3.0)
        c = RetryControl(b)
        for n, full in [(1, 1.0), (2, 2.0), (3, 3.0), (4, 3.0)]:
            draws = [c.backoff(n) for _ in range(200)]
            assert all(full / 2 <= d <= full for d in draws)
            assert max(draws) - min(draws) > full / 4  # it is random

    def test_exhausted_retries_dead_letter_with_reason(self, make_booster: Any) -> None:
        rec = Recorder()

        def broken() -> None:
            rec.hit()
            raise ValueError("always")

        b = make_booster(broken, max_retries=2)
        r = b.push()
        assert self.run_until(b, lambda: len(_dead(b)) == 1, 15)
        assert rec.attempts == [0, 1, 2]
        dead = _dead(b)[0]
        assert dead.id == r.task_id
        assert "failed after 3 attempt(s)" in dead.reason and "ValueError: always" in dead.reason

    def test_only_chosen_exceptions_are_retried(self, make_booster: Any) -> None:
        rec = Recorder()

        def wrong() -> None:
            rec.hit()
            raise KeyError("not retried")

        b = make_booster(wrong, max_retries=3, retry_on=(ConnectionError,))
        b.push()
        assert self.run_until(b, lambda: len(_dead(b)) == 1, 15)
        assert rec.attempts == [0]
        assert "KeyError" in _dead(b)[0].reason

    def test_republish_mode_counts_attempts_on_the_envelope(self, make_booster: Any) -> None:
        rec = Recorder()

        def flaky() -> None:
            if rec.hit() < 2:
                raise ConnectionError("later")

        b = make_booster(flaky, max_retries=2, retry_mode="republish", retry_backoff=0.3, retry_jitter=False)
        b.push()
        assert self.run_until(b, lambda: len(rec.attempts) == 3, 15)
        assert rec.attempts == [0, 1, 2]
        gaps = [y - x for x, y in zip(rec.times, rec.times[1:])]
        assert gaps[0] >= 0.28 and gaps[1] >= 0.58, gaps
        time.sleep(0.3)
        assert _dead(b) == [] and b.count() == 0

    def test_republish_mode_exhausted_goes_to_dlq(self, make_booster: Any) -> None:
        rec = Recorder()

        def broken() -> None:
            rec.hit()
            raise ConnectionError("down")

        b = make_booster(broken, max_retries=1, retry_mode="republish")
        b.push()
        assert self.run_until(b, lambda: len(_dead(b)) == 1, 15)
        assert rec.attempts == [0, 1]
        assert "failed after 2 attempt(s)" in _dead(b)[0].reason

    def test_per_message_max_retries_override(self, make_booster: Any) -> None:
        rec = Recorder()

        def broken(tag: str) -> None:
            rec.hit()
            raise ConnectionError(tag)

        b = make_booster(broken, max_retries=3)
        b.publish({"tag": "no-retries"}, TaskOptions(max_retries=0))
        assert self.run_until(b, lambda: len(_dead(b)) == 1, 15)
        assert rec.attempts == [0]

    def test_task_raised_retry_counts_against_max_retries(self, make_booster: Any) -> None:
        rec = Recorder()

        def asks() -> None:
            rec.hit()
            raise Retry(delay=0.05)

        b = make_booster(asks, max_retries=2)
        b.push()
        assert self.run_until(b, lambda: len(_dead(b)) == 1, 15)
        assert rec.attempts == [0, 1, 2]
        assert "retries exhausted" in _dead(b)[0].reason


class TestSignals(ControlContract):
    """K4: the kernel handles Requeue and DeadLetter raised by a task; the DLQ is inspected from the CLI."""

    control = "retry"
    on_params = {"max_retries": 1}

    def test_requeue_runs_again_without_counting_an_attempt(self, make_booster: Any) -> None:
        rec = Recorder()

        def busy() -> str:
            if len(rec.attempts) == 0:
                rec.hit()
                raise Requeue(delay=0.2)
            rec.hit()
            return "done"

        b = make_booster(busy, max_retries=1)
        b.push()
        assert self.run_until(b, lambda: len(rec.attempts) == 2, 15)
        assert rec.attempts == [0, 0]
        gap = rec.times[1] - rec.times[0]
        assert gap >= 0.18
        time.sleep(0.2)
        assert _dead(b) == []

    def test_dead_letter_signal_is_not_retried(self, make_booster: Any) -> None:
        rec = Recorder()

        def poison(x: int) -> None:
            rec.hit()
            raise DeadLetter(f"bad input {x}")

        b = make_booster(poison, max_retries=3)
        r = b.push(7)
        assert self.run_until(b, lambda: len(_dead(b)) == 1, 15)
        assert rec.attempts == [0]
        assert (_dead(b)[0].id, _dead(b)[0].reason) == (r.task_id, "bad input 7")

    @on_brokers("sqlite")
    def test_dlq_list_replay_purge_from_the_cli(self, make_booster: Any) -> None:
        from boostkernel.cli.main import cli

        fail = {"on": True}
        ran: list[int] = []

        def task(x: int) -> None:
            ran.append(x)
            if fail["on"]:
                raise ValueError(f"broken {x}")

        b = make_booster(task, max_retries=1)
        r1, r2 = b.push(1), b.push(2)
        assert self.run_until(b, lambda: len(_dead(b)) == 2, 15)
        b.stop(10)
        REGISTRY.pop(b.queue)  # the CLI builds its own stand-in booster for the queue
        runner = CliRunner()
        out = runner.invoke(cli, ["dlq", "list", b.queue], env={"COLUMNS": "400"})
        assert out.exit_code == 0, out.output
        assert r1.task_id in out.output and r2.task_id in out.output
        assert "ValueError: broken 1" in out.output
        out = runner.invoke(cli, ["dlq", "replay", b.queue, "--id", r1.task_id])
        assert out.exit_code == 0 and "replayed 1 message(s)" in out.output, out.output
        REGISTRY.pop(b.queue, None)
        REGISTRY[b.queue] = b
        fail["on"] = False
        ran.clear()
        b.consume()
        assert wait_until(lambda: ran == [1], 10), ran
        b.stop(10)
        REGISTRY.pop(b.queue)
        out = runner.invoke(cli, ["dlq", "purge", b.queue, "--yes"])
        assert out.exit_code == 0 and "deleted 1 dead letter(s)" in out.output, out.output
        assert _dead(b) == []


@pytest.mark.parametrize("mode", ["worker", "republish"])
def test_async_task_retries(mode: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from boostkernel import boost

    monkeypatch.setenv("BOOSTKERNEL_DATA_DIR", str(tmp_path))
    attempts: list[int] = []

    async def aflaky() -> None:
        ctx = current_task()
        assert ctx is not None
        attempts.append(ctx.attempt)
        if ctx.attempt < 2:
            raise ConnectionError("async not yet")

    aflaky.__qualname__ = f"aflaky_{mode}"
    b = boost(f"retry_async_{mode}_{tmp_path.name}", concurrency="asyncio", max_retries=2, retry_mode=mode)(aflaky)
    try:
        b.push()
        b.consume()
        assert wait_until(lambda: len(attempts) == 3, 10)
        assert attempts == [0, 1, 2]
    finally:
        b.stop(10)
        REGISTRY.pop(b.queue, None)
