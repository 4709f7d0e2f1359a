"""K17 logging, K18 current task, K19 publish-time validation, K21 consume groups, K22 methods as tasks."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from boostkernel import TaskContext, boost, current_task
from boostkernel.booster import REGISTRY
from boostkernel.testing.helpers import wait_until


def q() -> str:
    return f"cf_{uuid.uuid4().hex[:10]}"


# --- K17 logging -----------------------------------------------------------------------------------
_LOG_SCRIPT = """
import logging, sys, time
from boostkernel import boost
from boostkernel.logs import setup_logging, queue_logger

setup_logging("INFO")

@boost({queue!r}, broker="memory", results=True)
def job(n: int) -> int:
    queue_logger({queue!r}).info("connecting to redis://admin:s3cr3t@db.example:6379/0 with password=hunter2")
    logging.getLogger("boostkernel.user").warning("plain record inside the task %d", n)
    if n == 2:
        raise RuntimeError("bad token=abc123 for amqp://u:pw123@mq/")
    return n

rs = [job.push(i) for i in (1, 2)]
job.consume()
rs[0].get(10)
try:
    rs[1].get(10)
except Exception:
    pass
print("IDS", rs[0].task_id, rs[1].task_id, flush=True)
job.stop()
"""


def _run_log_script(tmp_path: Path, **env: str) -> tuple[list[str], str, str]:
    queue = q()
    script = tmp_path / "logjob.py"
    script.write_text(textwrap.dedent(_LOG_SCRIPT.format(queue=queue)))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=60,
                         env={**os.environ, "BOOSTKERNEL_DATA_DIR": str(tmp_path), **env})
    assert out.returncode == 0, out.stderr.decode()
    ids = out.stdout.decode().split("IDS", 1)[1].split()
    return ids, out.stderr.decode(), queue


def test_json_logs_carry_task_ids_and_mask_secrets(tmp_path: Path) -> None:
    (ok_id, bad_id), err, queue = _run_log_script(tmp_path, BOOSTKERNEL_LOG_JSON="1")
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert records, err
    assert "s3cr3t" not in err and "hunter2" not in err and "pw123" not in err and "abc123" not in err
    connecting = [r for r in records if r["message"].startswith("connecting to")]
    assert {r["task_id"] for r in connecting} == {ok_id, bad_id}
    assert all("redis://admin:**@db.example" in r["message"] and "password=**" in r["message"] for r in connecting)
    assert all(r["logger"] == f"boostkernel.queue.{queue}" for r in connecting)
    plain = [r for r in records if r["message"].startswith("plain record inside")]
    assert {r["task_id"] for r in plain} == {ok_id, bad_id}  # any boostkernel logger, inside a task
    failed = [r for r in records if r["level"] == "ERROR" and bad_id in r["message"]]
    assert failed and failed[0]["task_id"] == bad_id


def test_console_logs_colored_and_masked(tmp_path: Path) -> None:
    (ok_id, _), err, _ = _run_log_script(tmp_path, BOOSTKERNEL_LOG_COLOR="1")
    lines = [line for line in err.splitlines() if "connecting to" in line]
    assert lines and "\x1b[32mINFO" in lines[0]
    assert any(f"[{ok_id}]" in line for line in lines)
    assert "s3cr3t" not in err and "hunter2" not in err
    (_, _), plain_err, _ = _run_log_script(tmp_path, BOOSTKERNEL_LOG_COLOR="0")
    assert "\x1b[" not in plain_err


# --- K18 current task -----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["threads", "solo", "asyncio-sync", "asyncio-async"])
def test_current_task_in_threads_and_coroutines(mode: str) -> None:
    seen: dict[str, tuple[str, str, int]] = {}
    concurrency = "asyncio" if mode.startswith("asyncio") else mode

    if mode == "asyncio-async":
        @boost(q(), broker="memory", concurrency=concurrency, results=True, workers=4)
        async def task(n: int) -> str:
            await asyncio.sleep(0.01)
            ctx = current_task()
            assert ctx is not None
            seen[str(n)] = (ctx.task_id, ctx.queue, ctx.attempt)
            return ctx.task_id
    else:
        @boost(q(), broker="memory", concurrency=concurrency, results=True, workers=4)
        def task(n: int) -> str:  # type: ignore[misc]
            time.sleep(0.01)
            ctx = current_task()
            assert ctx is not None
            seen[str(n)] = (ctx.task_id, ctx.queue, ctx.attempt)
            return ctx.task_id

    assert current_task() is None
    rs = [task.push(i) for i in range(8)]
    task.consume()
    try:
        ids = [r.get(10) for r in rs]
        assert ids == [r.task_id for r in rs]  # each task saw its own id, even running side by side
        assert {v[1] for v in seen.values()} == {task.queue} and {v[2] for v in seen.values()} == {0}
    finally:
        task.stop()
        REGISTRY.pop(task.queue, None)


def test_current_task_inside_a_timeout_control() -> None:
    # the timeout control runs the function in a helper thread: the context must follow it (funboost #109)
    @boost(q(), broker="memory", results=True, timeout=5)
    def t() -> str | None:
        ctx = current_task()
        return ctx.task_id if ctx else None

    r = t.push()
    t.consume()
    try:
        assert r.get(10) == r.task_id
    finally:
        t.stop()
        REGISTRY.pop(t.queue, None)


def test_current_task_is_a_task_context() -> None:
    box: list[Any] = []

    @boost(q(), broker="memory", results=True)
    def t() -> None:
        box.append(current_task())

    t.push()
    t.consume()
    try:
        assert wait_until(lambda: bool(box), 10)
        ctx = box[0]
        assert isinstance(ctx, TaskContext) and ctx.envelope.queue == t.queue and ctx.delivery is not None
    finally:
        t.stop()
        REGISTRY.pop(t.queue, None)


# --- K19 publish-time validation ------------------------------------------------------------------
def test_wrong_arguments_raise_type_error_at_push_with_signature() -> None:
    @boost(q(), broker="memory")
    def add(x: int, y: int = 2, *, scale: float = 1.0) -> float:
        return (x + y) * scale

    with pytest.raises(TypeError, match=r"add\(x: int, y: int = 2, \*, scale: float = 1.0\)") as info:
        add.push(1, 2, 3)
    assert "too many positional arguments" in str(info.value)
    with pytest.raises(TypeError, match="missing a required argument: 'x'"):
        add.push(y=1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        add.publish({"x": 1, "z": 2})
    with pytest.raises(TypeError, match="JSON-serialisable"):
        add.push(object())
    assert add.count() == 0  # nothing was published
    REGISTRY.pop(add.queue, None)


# --- K21 consume groups ---------------------------------------------------------------------------
_GROUP_MOD = """
from boostkernel import boost

@boost("{p}_a", broker="sqlite", group="g1")
def a(n: int) -> None: pass

@boost("{p}_b", broker="sqlite", group="g1")
def b(n: int) -> None: pass

@boost("{p}_c", broker="sqlite", group="g2")
def c(n: int) -> None: pass
"""


def _worker(tmp_path: Path, mod: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "from boostkernel.cli import main; main()", "worker", str(mod),
                             *args], env={**os.environ, "BOOSTKERNEL_DATA_DIR": str(tmp_path)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize("selector", [["--group", "g1"], ["--queue", "{p}_a", "--queue", "{p}_b"]])
def test_worker_consumes_only_the_selected_group_or_queues(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           selector: list[str]) -> None:
    monkeypatch.setenv("BOOSTKERNEL_DATA_DIR", str(tmp_path))
    p = f"grp{uuid.uuid4().hex[:8]}"
    mod = tmp_path / f"groups_{p}.py"
    mod.write_text(textwrap.dedent(_GROUP_MOD.format(p=p)))
    from boostkernel.worker import boosters_of

    boosters = {bb.queue: bb for bb in boosters_of(str(mod))}
    for bb in boosters.values():
        bb.push_many([(i,) for i in range(5)])
    proc = _worker(tmp_path, mod, *[s.format(p=p) for s in selector])
    try:
        assert wait_until(lambda: boosters[f"{p}_a"].count() == 0 and boosters[f"{p}_b"].count() == 0, 30)
        time.sleep(0.5)
        assert boosters[f"{p}_c"].count() == 5  # other group: untouched
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()[-2000:]
    for bb in boosters.values():
        bb.purge()
        REGISTRY.pop(bb.queue, None)


# --- K22 methods as tasks -------------------------------------------------------------------------
RESULTS: dict[str, Any] = {}
QM = q()


class Greeter:
    def __init__(self, greeting: str, punct: str = "!") -> None:
        self.greeting, self.punct = greeting, punct

    def boost_state(self) -> dict[str, Any]:
        return {"greeting": self.greeting, "punct": self.punct}

    @boost(f"{QM}_inst", broker="memory", results=True)
    def greet(self, name: str) -> str:
        return f"{self.greeting}, {name}{self.punct}"

    @boost(f"{QM}_cls", broker="memory", results=True)
    @classmethod
    def kind(cls, n: int) -> str:
        return f"{cls.__name__}:{n}"

    @boost(f"{QM}_static", broker="memory", results=True)
    @staticmethod
    def double(n: int) -> int:
        return 2 * n


@dataclasses.dataclass
class Counter:
    start: int

    @boost(f"{QM}_dc", broker="memory", results=True)
    def add(self, n: int) -> int:
        return self.start + n


class NoState:
    @boost(f"{QM}_nostate", broker="memory")
    def run(self) -> None:
        pass


def _plain(n: int) -> int:
    return n + 1


class Namespace:  # a plain booster stored on a class stays a plain function
    inc = boost(f"{QM}_ns", broker="memory", results=True)(_plain)


def test_booster_stored_on_a_class_is_not_a_method() -> None:
    assert Namespace.inc.method_kind is None and Namespace().inc is Namespace.inc
    Namespace.inc.consume()
    try:
        assert Namespace.inc.push(1).get(10) == 2
    finally:
        Namespace.inc.stop()


def test_instance_method_rebuilt_from_recorded_state() -> None:
    g = Greeter("Hello", punct="?")
    assert g.greet("local") == "Hello, local?"  # a plain call still runs locally on this instance
    r = g.greet.push("Ann")
    body = json.loads(Greeter.greet.broker.fetch(1, 1)[0].body)
    Greeter.greet.broker.close()  # returns that delivery to the queue
    assert body["args"] == [{"greeting": "Hello", "punct": "?"}, "Ann"]  # state recorded, never pickled
    Greeter.greet.consume()
    try:
        assert r.get(10) == "Hello, Ann?"
        rs = Greeter("Hi").greet.push_many([("a",), {"name": "b"}])
        assert [x.get(10) for x in rs] == ["Hi, a!", "Hi, b!"]
    finally:
        Greeter.greet.stop()


def test_dataclass_instances_need_no_boost_state() -> None:
    Counter.add.consume()
    try:
        assert Counter(40).add.push(2).get(10) == 42
    finally:
        Counter.add.stop()


def test_classmethod_and_staticmethod() -> None:
    assert Greeter.kind(1) == "Greeter:1" and Greeter.double(4) == 8  # local calls
    Greeter.kind.consume()
    Greeter.double.consume()
    try:
        assert Greeter.kind.push(3).get(10) == "Greeter:3"
        assert Greeter("x").kind.push(4).get(10) == "Greeter:4"
        assert Greeter.double.push(21).get(10) == 42
    finally:
        Greeter.kind.stop()
        Greeter.double.stop()


def test_instance_without_state_fails_at_push_with_the_fix() -> None:
    with pytest.raises(TypeError, match=r"define boost_state\(self\)"):
        NoState().run.push()
    with pytest.raises(TypeError, match="boost_state|missing"):
        NoState.run.push()  # on the class there is no instance to record


def test_wrong_method_arguments_fail_at_push() -> None:
    with pytest.raises(TypeError, match="greet"):
        Greeter("a").greet.push("x", "too many")
    with pytest.raises(TypeError, match="kind"):
        Greeter.kind.push()
