"""Regressions of issue #12 "correct at the edges": honest types, early validation, clean shutdown."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from boostkernel import boost
from boostkernel.booster import REGISTRY
from boostkernel.testing import wait_until


def q() -> str:
    return f"edge_{uuid.uuid4().hex[:10]}"


# --- boosters_of(module object) --------------------------------------------------------------------------
def test_boosters_of_accepts_a_module_object() -> None:
    from boostkernel.worker import boosters_of

    name = f"edge_mod_{uuid.uuid4().hex[:8]}"
    mod = ModuleType(name)
    sys.modules[name] = mod
    qa, qb = q(), q()
    try:
        code = (f"from boostkernel import boost\n"
                f"@boost({qa!r}, broker='memory', group='g1')\ndef a(x): return x\n"
                f"@boost({qb!r}, broker='memory', group='g2')\ndef b(x): return x\n")
        exec(compile(code, name, "exec"), mod.__dict__)  # noqa: S102 - a module built by the test
        assert [b.queue for b in boosters_of(mod, group="g1")] == [qa]
        assert {b.queue for b in boosters_of(mod)} == {qa, qb}
        assert [b.queue for b in boosters_of(name, group="g2")] == [qb]
    finally:
        sys.modules.pop(name, None)
        REGISTRY.pop(qa, None)
        REGISTRY.pop(qb, None)


# --- stop(timeout) shorter than the running tasks ------------------------------------------------------------
def test_stop_with_short_timeout_reports_abandoned_tasks_without_a_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()
    started: list[int] = []

    @boost(q(), broker="memory", workers=2)
    def slow(i: int) -> None:
        started.append(i)
        release.wait(10)

    crashes: list[BaseException] = []
    old_hook = threading.excepthook
    threading.excepthook = lambda a: crashes.append(a.exc_value)  # type: ignore[assignment,misc]
    try:
        results = [slow.push(i) for i in range(6)]
        slow.consume()
        assert wait_until(lambda: len(started) == 2, 10)
        with caplog.at_level(logging.WARNING, logger="boostkernel"):
            slow.stop(timeout=0.3)
        release.set()
        consumer = slow._consumer
        assert consumer is not None and consumer._thread is not None
        consumer._thread.join(10)  # the dispatch thread, blocked on a full pool, wakes up now and ends
        assert not consumer._thread.is_alive()
    finally:
        threading.excepthook = old_hook
        release.set()
        REGISTRY.pop(slow.queue, None)
    assert crashes == []
    text = caplog.text
    assert "2 task(s) still running, abandoned" in text
    running_ids = {results[i].task_id for i in started}
    assert all(tid in text for tid in running_ids)
    assert "Traceback" not in text and "executor is shut down" not in text


# --- a SIGTERM delivered twice (uv run / timeout / systemd signal the process group) ------------------------
_SIGNAL_MOD = """
import os, pathlib, time
from boostkernel import boost

OUT = pathlib.Path(os.environ["EDGE_OUT"])

@boost({queue!r}, broker="sqlite", workers=4)
def job(n: int) -> None:
    (OUT / f"start-{{n}}").touch()
    time.sleep(1.5)
    (OUT / f"end-{{n}}").touch()
"""


def test_repeated_sigterm_is_one_graceful_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOOSTKERNEL_DATA_DIR", str(tmp_path))
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("EDGE_OUT", str(out))
    queue = q()
    mod = tmp_path / f"sig_{queue}.py"
    mod.write_text(_SIGNAL_MOD.format(queue=queue))
    from boostkernel.worker import boosters_of

    (job,) = boosters_of(str(mod))
    try:
        job.push_many([(i,) for i in range(4)])
        env = {**os.environ, "BOOSTKERNEL_DATA_DIR": str(tmp_path), "EDGE_OUT": str(out)}
        proc = subprocess.Popen([sys.executable, "-c", "from boostkernel.cli import main; main()", "worker",
                                 str(mod)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            assert wait_until(lambda: len(list(out.glob("start-*"))) == 4, 30), "the worker never started tasks"
            os.killpg(proc.pid, signal.SIGTERM)  # what `kill -TERM -PGID` does; under uv run the worker then
            time.sleep(0.3)                      # gets uv's forwarded copy a moment later (two signals sent
            os.killpg(proc.pid, signal.SIGTERM)  # at once would be merged into one by the interpreter)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err.decode()[-3000:]
        assert len(list(out.glob("end-*"))) == 4, "in-flight tasks were abandoned"
        assert b"already stopping gracefully" in err
    finally:
        job.purge()
        REGISTRY.pop(job.queue, None)


def test_second_ctrl_c_still_forces() -> None:
    from boostkernel import signals as worker

    old = worker._first_signal_at
    try:
        worker._first_signal_at = 100.0
        assert worker._is_repeat(signal.SIGTERM, 101.0)        # SIGTERM copy: same request
        assert not worker._is_repeat(signal.SIGTERM, 103.0)    # a later, deliberate SIGTERM forces
        assert worker._is_repeat(signal.SIGINT, 100.1)         # a wrapper's copy of Ctrl-C
        assert not worker._is_repeat(signal.SIGINT, 100.6)     # a person pressing Ctrl-C again
    finally:
        worker._first_signal_at = old


# --- honest argument and result types ----------------------------------------------------------------------
@dataclasses.dataclass
class Point:
    x: int
    at: dt.datetime


class Colour(enum.Enum):
    RED = "red"


@pytest.mark.parametrize("broker", ["memory", "sqlite"])
def test_annotated_arguments_arrive_with_their_types(broker: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOOSTKERNEL_DATA_DIR", str(tmp_path))
    seen: list[tuple[Any, ...]] = []

    @boost(q(), broker=broker, results=True)
    def f(when: dt.datetime, key: uuid.UUID, p: Point, amount: Decimal, c: Colour, day: dt.date | None = None,
          tags: frozenset[str] = frozenset()) -> tuple[int, dt.datetime]:
        seen.append((when, key, p, amount, c, day, tags))
        return (p.x, when)

    when = dt.datetime(2026, 1, 2, 3, 4, 5, 600, tzinfo=dt.timezone.utc)
    key = uuid.uuid4()
    p = Point(3, dt.datetime(2025, 5, 6, 7, 8, 9))
    try:
        r = f.push(when, key, p, Decimal("1.25"), Colour.RED, day=dt.date(2026, 2, 3), tags=frozenset({"a"}))
        f.consume()
        assert r.get(10) == (3, when)  # the result is rebuilt from the return annotation too
        assert seen == [(when, key, p, Decimal("1.25"), Colour.RED, dt.date(2026, 2, 3), frozenset({"a"}))]
        assert type(seen[0][1]) is uuid.UUID and type(seen[0][2].at) is dt.datetime
    finally:
        f.stop()
        REGISTRY.pop(f.queue, None)


@pytest.mark.parametrize("value", [dt.datetime.now(dt.timezone.utc), uuid.uuid4(), Decimal("1"), {1, 2},
                                   [1, {"k": uuid.uuid4()}], Colour.RED, {1: "int key"}, object()])
def test_non_json_arguments_without_annotation_are_refused(value: Any) -> None:
    @boost(q(), broker="memory")
    def f(x, y: Any = None) -> None: ...  # noqa: ANN001 - unannotated on purpose

    try:
        with pytest.raises(TypeError, match="argument 'x' of .* must be JSON-serialisable"):
            f.push(value)
        with pytest.raises(TypeError, match="argument 'y' of .* must be JSON-serialisable"):
            f.push(1, y=value)
        with pytest.raises(TypeError, match="JSON-serialisable"):
            f.publish({"x": value})
        assert f.count() == 0
    finally:
        REGISTRY.pop(f.queue, None)


def test_plain_json_arguments_pass_unchanged() -> None:
    got: list[Any] = []

    @boost(q(), broker="memory")
    def f(a, b: int, c: list[int], d: dict[str, Any], e: str | None) -> None:  # noqa: ANN001
        got.append((a, b, c, d, e))

    try:
        f.push((1, 2), True, [1], {"k": [1.5, None]}, None)
        f.consume()
        assert wait_until(lambda: got, 10)
        assert got == [([1, 2], True, [1], {"k": [1.5, None]}, None)]  # a tuple arrives as a list, as documented
    finally:
        f.stop()
        REGISTRY.pop(f.queue, None)


def test_a_message_whose_typed_argument_does_not_fit_is_dead_lettered() -> None:
    from boostkernel.broker import Outgoing
    from boostkernel.message import Envelope

    @boost(q(), broker="memory")
    def f(when: dt.datetime) -> None: ...

    try:
        env = Envelope(f.queue, ["not a date"], {})
        f.broker.publish(Outgoing(env.id, env.encode(), 0, None))
        f.consume()
        assert wait_until(lambda: f.dead_letters(), 10)
        (dl,) = f.dead_letters()
        assert "argument 'when'" in str(dl.reason) and "does not fit" in str(dl.reason)
    finally:
        f.stop()
        REGISTRY.pop(f.queue, None)


@pytest.mark.parametrize("broker", ["memory", "sqlite"])
def test_a_non_json_result_is_the_same_everywhere_or_a_recorded_failure(broker: str, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from boostkernel import TaskFailed

    monkeypatch.setenv("BOOSTKERNEL_DATA_DIR", str(tmp_path))

    @boost(q(), broker=broker, results=True)
    def untyped(x: int):  # noqa: ANN202 - no return annotation on purpose
        return {x, x + 1}

    @boost(q(), broker=broker, results=True)
    def typed(x: int) -> set[int]:
        return {x, x + 1}

    try:
        bad, good = untyped.push(1), typed.push(1)
        untyped.consume()
        typed.consume()
        with pytest.raises(TaskFailed, match="returned a value of type set"):
            bad.get(10)
        assert bad.status == "failure"
        assert good.get(10) == {1, 2}
        # another process reads the same record: a fresh booster object on the same queue and store
        if broker == "sqlite":
            from boostkernel.results import AsyncResult

            rec = AsyncResult(good.task_id, typed).record()
            assert rec is not None and sorted(rec["result"]) == [1, 2]
    finally:
        untyped.stop()
        typed.stop()
        REGISTRY.pop(untyped.queue, None)
        REGISTRY.pop(typed.queue, None)


# --- push_many validates everything before publishing -----------------------------------------------------------
@pytest.mark.parametrize("bad", [("x", "too", "many"), (uuid.uuid4(),)])
def test_push_many_publishes_nothing_when_an_item_is_bad(bad: tuple[Any, ...], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOOSTKERNEL_DATA_DIR", str(tmp_path))

    @boost(q(), broker="sqlite")
    def f(x) -> None: ...  # noqa: ANN001

    try:
        calls = [(i,) for i in range(2500)] + [bad] + [(i,) for i in range(10)]
        with pytest.raises(TypeError, match="push_many item 2500: .*nothing was published"):
            f.push_many(calls, chunk_size=1000)
        assert f.count() == 0
        assert len(f.push_many([(i,) for i in range(2500)], chunk_size=1000)) == 2500
        assert f.count() == 2500
    finally:
        f.purge()
        REGISTRY.pop(f.queue, None)


# --- the user's own logger inside a task ---------------------------------------------------------------------
def test_a_users_own_logger_gets_the_task_id_and_masking() -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    user_log = logging.getLogger(f"myapp.{uuid.uuid4().hex[:6]}")
    user_log.setLevel(logging.INFO)
    user_log.propagate = False
    user_log.addHandler(Keep())

    @boost(q(), broker="memory")
    def task(n: int) -> None:
        user_log.info("connecting to %s with password=%s", "redis://app:s3cret@db:6379/0", "hunter2")

    try:
        r = task.push(1)
        task.consume()
        assert wait_until(lambda: records, 10)
        user_log.info("outside any task, password=%s", "visible")
    finally:
        task.stop()
        REGISTRY.pop(task.queue, None)
    inside, outside = records[0], records[-1]
    assert inside.task_id == r.task_id  # type: ignore[attr-defined]
    text = inside.getMessage()
    assert "hunter2" not in text and "s3cret" not in text and "password=**" in text
    assert outside.task_id == "-"  # type: ignore[attr-defined]
    assert outside.getMessage().endswith("password=visible")  # outside a task nothing is rewritten


# --- per-message priority: one rule for every broker ------------------------------------------------------------
def test_priority_is_accepted_where_the_broker_orders_by_it() -> None:
    from boostkernel import TaskOptions

    @boost(q(), broker="memory")
    def f(x: int) -> None: ...

    try:
        f.publish({"x": 1}, TaskOptions(priority=5))
        f.publish({"x": 1}, TaskOptions(priority=0))  # the default: nothing to honour
        assert f.count() == 2
    finally:
        REGISTRY.pop(f.queue, None)


@pytest.mark.service("redis")
@pytest.mark.parametrize("broker", ["redis-streams", "celery", "dramatiq"])
def test_priority_is_refused_where_it_would_be_ignored(broker: str, tmp_path: Path) -> None:
    from boostkernel import TaskOptions
    from boostkernel.errors import ConfigError
    from boostkernel.testing.helpers import service_url

    @boost(q(), broker=broker, broker_url=service_url("redis"), data_dir=str(tmp_path))
    def f(x: int) -> None: ...

    try:
        with pytest.raises(ConfigError, match="priority.*would be ignored"):
            f.publish({"x": 1}, TaskOptions(priority=5))
        with pytest.raises(ConfigError, match="priority"):
            f.push_many([(1,)], options=TaskOptions(priority=5))
        assert f.count() == 0
    finally:
        f.purge()
        REGISTRY.pop(f.queue, None)


def test_framework_brokers_say_when_they_honour_priority() -> None:
    pytest.importorskip("dramatiq")
    pytest.importorskip("celery")
    from boostkernel_celery.broker import CeleryBroker
    from boostkernel_dramatiq.broker import DramatiqBroker

    from boostkernel.config import build_params

    amqp = "amqp://guest:guest@127.0.0.1:5672/%2F"
    assert DramatiqBroker.honours_priority(build_params("x", {"broker_url": amqp, "broker_options": {
        "broker_kwargs": {"max_priority": 9}}}))
    assert not DramatiqBroker.honours_priority(build_params("x", {"broker_url": amqp}))
    assert not DramatiqBroker.honours_priority(build_params("x", {"broker_url": "redis://127.0.0.1:6379/0"}))
    assert CeleryBroker.honours_priority(build_params("x", {"broker_url": amqp, "broker_options": {
        "app_config": {"task_queue_max_priority": 9}}}))
    assert not CeleryBroker.honours_priority(build_params("x", {"broker_url": "redis://127.0.0.1:6379/0"}))


# --- configuration from different sources is validated merged, at decoration ---------------------------------------
def test_mixed_sources_that_do_not_fit_fail_at_decoration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from boostkernel import params as params_mod
    from boostkernel.errors import ConfigError

    (tmp_path / "pyproject.toml").write_text('[tool.boostkernel]\nbroker_url = "redis://127.0.0.1:6379/0"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(params_mod, "_pyproject_cache", {})
    monkeypatch.setenv("BOOSTKERNEL_BROKER", "sqlite")
    monkeypatch.setenv("BOOSTKERNEL_DATA_DIR", str(tmp_path))
    name = q()
    with pytest.raises(ConfigError, match=r"broker 'sqlite' \(from BOOSTKERNEL_BROKER\) cannot use the URL "
                                          r"'redis://127.0.0.1:6379/0' \(from \[tool.boostkernel\] in pyproject.toml\)"):
        @boost(name)
        def f(x: int) -> None: ...
    assert name not in REGISTRY
    # the same settings from one source that fit are fine
    monkeypatch.setenv("BOOSTKERNEL_BROKER", "memory")
    monkeypatch.setattr(params_mod, "_pyproject_cache", {})
    (tmp_path / "pyproject.toml").write_text('[tool.boostkernel]\nbroker_url = "memory://x"\n')
    try:
        @boost(name)
        def g(x: int) -> None: ...

        assert g.broker_name == "memory"
    finally:
        REGISTRY.pop(name, None)
