"""Every concurrency mode, end to end through ``boostkernel worker``, on the SQLite broker and on Redis.

Each case writes a small task module, starts the real worker CLI on it in a subprocess (the user writes
no monkey-patching: for gevent/eventlet the worker prepares the process before importing the module),
publishes tasks from this process, waits for their results, checks that they ran in that mode (patched
process, pool threads, event loop …) and with the concurrency the mode promises, then stops the worker
with SIGTERM and checks it exits cleanly.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from boostkernel.testing.helpers import service_url, wait_until

MODES = ["threads", "asyncio", "solo", "gevent", "eventlet"]
BK = str(Path(sys.executable).parent / "boostkernel")


def broker_params() -> list[Any]:
    redis_marks: list[Any] = [pytest.mark.service("redis")]
    if importlib.util.find_spec("boostkernel_redis") is None:
        redis_marks.append(pytest.mark.skip(reason="the redis broker plugin (boostkernel-redis) is not installed"))
    return [pytest.param("sqlite", id="sqlite"), pytest.param("redis", id="redis", marks=redis_marks)]


TEMPLATE = '''
import asyncio, os, threading, time
from boostkernel import boost

MODE = {mode!r}
BOOST_MODE = {boost_mode!r}


def proof():
    """Evidence that the task runs in MODE (computed inside the worker)."""
    if MODE == "gevent":
        from gevent import monkey
        return "patched" if monkey.is_module_patched("socket") else "NOT PATCHED"
    if MODE == "eventlet":
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from eventlet import patcher
        return "patched" if patcher.is_monkey_patched("socket") else "NOT PATCHED"
    if MODE == "asyncio":
        try:
            asyncio.get_running_loop()
            return "event loop"
        except RuntimeError:
            return "no loop"
    return threading.current_thread().name


if MODE == "asyncio":
    @boost({queue!r}, broker={broker!r}, broker_url={url!r}, concurrency=BOOST_MODE, workers={workers}, results=True{extra})
    async def probe(x, delay=0.1):
        t0 = time.time()
        await asyncio.sleep(delay)
        return {{"x": x * 2, "pid": os.getpid(), "start": t0, "end": time.time(), "proof": proof()}}
else:
    @boost({queue!r}, broker={broker!r}, broker_url={url!r}, concurrency=BOOST_MODE, workers={workers}, results=True{extra})
    def probe(x, delay=0.1):
        t0 = time.time()
        time.sleep(delay)
        return {{"x": x * 2, "pid": os.getpid(), "start": t0, "end": time.time(), "proof": proof()}}
'''


def write_tasks(tmp_path: Path, queue: str, mode: str, broker: str, workers: int = 10,
                boost_mode: str | None = None, name: str = "tasks", extra: str = "") -> Path:
    """A task module whose booster uses ``boost_mode`` (default ``mode``); ``proof()`` checks ``mode``."""
    url = service_url("redis") if broker == "redis" else None
    path = tmp_path / f"{name}_{queue}.py"
    path.write_text(textwrap.dedent(TEMPLATE.format(mode=mode, boost_mode=boost_mode or mode, queue=queue,
                                                    broker=broker, url=url, workers=workers, extra=extra)))
    return path


def collect(results: list[Any], proc: subprocess.Popen[str], timeout: float = 60) -> list[Any]:
    """Every result, failing at once (with the worker's output) if the worker exits first."""
    from boostkernel.errors import ResultTimeout

    deadline = time.monotonic() + timeout
    values = []
    for r in results:
        while True:
            try:
                values.append(r.get(timeout=1))
                break
            except ResultTimeout:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    pytest.fail(f"no result (worker exit {proc.poll()}):\n{proc.communicate()[0][-3000:]}")
    return values


def load_booster(path: Path) -> Any:
    """Import the task module here too (publishing needs no patching) and return its booster."""
    from boostkernel.worker import _import_target

    return _import_target(str(path)).probe


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda t: (t[0], t[1]))
    best = cur = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


def stop_worker(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"worker did not stop within 40 s after SIGTERM:\n{out[-3000:]}")
    assert proc.returncode == 0, f"worker exit code {proc.returncode}:\n{out[-3000:]}"
    return out


def start_worker(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([BK, "worker", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.parametrize("broker", broker_params())
@pytest.mark.parametrize("mode", MODES)
def test_mode_end_to_end_through_the_worker(mode: str, broker: str, tmp_path: Path, unique_queue: str) -> None:
    path = write_tasks(tmp_path, unique_queue, mode, broker)
    probe = load_booster(path)
    probe.purge()
    proc = start_worker(str(path))
    values = collect([probe.push(i) for i in range(30)], proc)
    out = stop_worker(proc)

    assert [v["x"] for v in values] == [i * 2 for i in range(30)]
    assert {v["pid"] for v in values} == {proc.pid}  # gevent/eventlet: re-exec keeps the worker's pid
    proofs = {v["proof"] for v in values}
    overlap = max_overlap([(v["start"], v["end"]) for v in values])
    if mode in ("gevent", "eventlet"):
        assert proofs == {"patched"}, out[-3000:]
        assert "restarting the worker with it prepared first" in out
    elif mode == "asyncio":
        assert proofs == {"event loop"}
    elif mode == "threads":
        # a pool thread, or (brokers declaring fetch_any_thread) the fetching thread that ran a lone message
        assert all(p.startswith(("boostkernel-worker", "boostkernel-fetch")) for p in proofs), proofs
    if mode == "solo":
        assert overlap == 1, "solo runs one task at a time"
    else:
        assert overlap >= 2, f"{mode} ran the tasks one at a time"
        assert overlap <= 10, "more tasks ran at once than workers=10 allows"
    assert "stopping gracefully" in out


@pytest.mark.parametrize("mode", ["gevent", "eventlet"])
def test_concurrency_option_prepares_the_process_before_import(mode: str, tmp_path: Path, unique_queue: str) -> None:
    """``--concurrency gevent`` overrides a module written for threads and patches before importing it."""
    path = write_tasks(tmp_path, unique_queue, mode, "sqlite", boost_mode="threads")  # written for threads
    probe = load_booster(path)
    probe.purge()
    proc = start_worker(str(path), "--concurrency", mode)
    values = collect([probe.push(i) for i in range(10)], proc)
    out = stop_worker(proc)
    assert {v["proof"] for v in values} == {"patched"}
    assert "restarting the worker" not in out  # known up front: patched before the import, no re-exec


def test_mixing_an_exclusive_mode_with_another_in_one_worker_is_refused(tmp_path: Path, unique_queue: str) -> None:
    path = tmp_path / f"mixed_{unique_queue}.py"
    path.write_text(textwrap.dedent(f'''
        from boostkernel import boost

        @boost("{unique_queue}_g", broker="memory", concurrency="gevent")
        def green(): pass

        @boost("{unique_queue}_t", broker="memory", concurrency="threads")
        def plain(): pass
    '''))
    proc = subprocess.run([BK, "worker", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    err = proc.stderr
    assert "cannot share" in err and f"-q {unique_queue}_g" in err and f"-q {unique_queue}_t" in err, err
    assert "Traceback" not in err


def test_mixing_in_one_process_is_a_clear_error_not_a_hang(unique_queue: str) -> None:
    from boostkernel import boost
    from boostkernel.errors import ConfigError

    @boost(unique_queue + "_t", broker="memory", concurrency="threads", workers=2)
    def plain() -> None:
        pass

    @boost(unique_queue + "_g", broker="memory", concurrency="gevent", workers=2)
    def green() -> None:
        pass

    plain.consume()
    try:
        with pytest.raises(ConfigError, match="cannot share"):
            green.consume()
    finally:
        plain.stop(5)


@pytest.mark.parametrize("mode", ["threads", "gevent", "eventlet"])
def test_timeout_stops_a_task_in_each_mode(mode: str, tmp_path: Path, unique_queue: str) -> None:
    """``timeout=`` stops a task that waits (gevent.Timeout / eventlet.Timeout in the green modes)."""
    path = write_tasks(tmp_path, unique_queue, mode, "sqlite", extra=", timeout=0.5")
    probe = load_booster(path)
    probe.purge()
    proc = start_worker(str(path))
    try:
        slow, quick = probe.push(1, 30.0), probe.push(2, 0.01)
        value = collect([quick], proc)[0]
        t0 = time.monotonic()
        record = slow.record(timeout=20)
        waited = time.monotonic() - t0
    finally:
        out = stop_worker(proc)
    assert value["x"] == 4
    assert record is not None and record["status"] == "failure", (record, out[-2000:])
    assert record["error"]["type"] == "TaskTimeout"
    assert record["duration"] < 10 and waited < 20  # stopped, not waited out for 30 s


@pytest.mark.parametrize("mode", ["threads", "gevent", "eventlet"])
def test_remote_cancel_stops_a_running_task_in_each_mode(mode: str, tmp_path: Path, unique_queue: str) -> None:
    """``cancellable=True`` + ``revoke()`` stops a running task (``executor.interrupt`` in the green modes)."""
    path = write_tasks(tmp_path, unique_queue, mode, "sqlite", extra=", cancellable=True")
    probe = load_booster(path)
    probe.purge()
    proc = start_worker(str(path))
    try:
        collect([probe.push(0, 0.01)], proc)  # the worker is up
        slow = probe.push(1, 30.0)
        assert wait_until(lambda: probe.count() == 0, 20, 0.02)
        time.sleep(0.5)  # let it start running (synchronisation, not a speed assertion)
        t0 = time.monotonic()
        slow.revoke()
        record = slow.record(timeout=20)
        waited = time.monotonic() - t0
        after = collect([probe.push(2, 0.01)], proc)[0]  # the slot is free again
    finally:
        out = stop_worker(proc)
    assert record is not None and record["status"] == "revoked", (record, out[-2000:])
    assert waited < 20 and record["duration"] < 20
    assert after["x"] == 4
