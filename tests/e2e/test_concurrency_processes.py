"""The process overlay end to end: ``--processes N``, ``processes=N`` in @boost, ``multi_process_consume(N)``.

Checks that N children (never the parent) run the tasks, each with its own pool of the chosen mode
(gevent/eventlet children are patched before the user's module is imported), that a killed child is
restarted, that SIGTERM on the parent stops every child gracefully (in-flight tasks finish), that every
child's logs reach the parent's output, and that a crash loop ends with a clear error instead of spinning.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from boostkernel.testing.helpers import service_url, wait_until

BK = str(Path(sys.executable).parent / "boostkernel")


def broker_params() -> list[Any]:
    redis_marks: list[Any] = [pytest.mark.service("redis")]
    if importlib.util.find_spec("boostkernel_redis") is None:
        redis_marks.append(pytest.mark.skip(reason="the redis broker plugin (boostkernel-redis) is not installed"))
    return [pytest.param("sqlite", id="sqlite"), pytest.param("redis", id="redis", marks=redis_marks)]


TEMPLATE = '''
import os, sys, threading, time
from boostkernel import boost

MODE = {mode!r}


def proof():
    if MODE == "gevent":
        from gevent import monkey
        return "patched" if monkey.is_module_patched("socket") else "NOT PATCHED"
    if MODE == "eventlet":
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from eventlet import patcher
        return "patched" if patcher.is_monkey_patched("socket") else "NOT PATCHED"
    return threading.current_thread().name


@boost({queue!r}, broker={broker!r}, broker_url={url!r}, concurrency=MODE, workers=5, processes={processes},
       results=True)
def probe(x, delay=0.05):
    time.sleep(delay)
    return {{"x": x, "pid": os.getpid(), "proof": proof()}}


if __name__ == "__main__":
    if sys.argv[1:] == ["multi"]:
        probe.multi_process_consume(2)
    else:
        probe.consume()
    probe.wait()
'''


class Proc:
    """A subprocess whose combined output is read continuously (so tests can wait for log lines)."""

    def __init__(self, args: list[str]) -> None:
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        with self.p.stdout:
            for line in self.p.stdout:
                self.lines.append(line)

    @property
    def out(self) -> str:
        return "".join(self.lines)

    def child_pids(self) -> list[int]:
        """Pids of children that logged they are consuming, in order."""
        return [int(m.group(1)) for m in re.finditer(r"worker process (\d+) consuming", self.out)]

    def wait_children(self, n: int, timeout: float = 60) -> list[int]:
        if not wait_until(lambda: len(set(self.child_pids())) >= n or self.p.poll() is not None, timeout, 0.05):
            self.kill()
            pytest.fail(f"{n} children did not start:\n{self.out[-3000:]}")
        assert self.p.poll() is None, self.out[-3000:]
        return self.child_pids()

    def terminate_and_wait(self, timeout: float = 40) -> int:
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"did not stop within {timeout} s after SIGTERM:\n{self.out[-3000:]}")
        self._reader.join(5)
        return self.p.returncode

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(10)
        self._reader.join(10)


def write_tasks(tmp_path: Path, queue: str, mode: str, broker: str, processes: int = 1) -> Path:
    url = service_url("redis") if broker == "redis" else None
    path = tmp_path / f"ptasks_{queue}.py"
    path.write_text(textwrap.dedent(TEMPLATE.format(mode=mode, queue=queue, broker=broker, url=url,
                                                    processes=processes)))
    return path


def load_booster(path: Path) -> Any:
    from boostkernel.worker import _import_target

    return _import_target(str(path)).probe


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def collect(results: list[Any], proc: Proc, timeout: float = 60) -> list[Any]:
    from boostkernel.errors import ResultTimeout

    deadline = time.monotonic() + timeout
    values = []
    for r in results:
        while True:
            try:
                values.append(r.get(timeout=1))
                break
            except ResultTimeout:
                if proc.p.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    pytest.fail(f"no result (exit {proc.p.poll()}):\n{proc.out[-3000:]}")
    return values


@pytest.mark.parametrize(("mode", "broker"), [
    ("threads", "sqlite"), ("gevent", "sqlite"), ("eventlet", "sqlite"),
    *[pytest.param(m, b.values[0], marks=b.marks, id=f"{m}-redis") for m in ("threads", "gevent", "eventlet")
      for b in broker_params()[1:]],
])
def test_worker_processes_each_with_its_own_pool(mode: str, broker: str, tmp_path: Path, unique_queue: str) -> None:
    path = write_tasks(tmp_path, unique_queue, mode, broker)
    probe = load_booster(path)
    probe.purge()
    proc = Proc([BK, "worker", str(path), "--processes", "2"])
    try:
        children = proc.wait_children(2)
        values = collect([probe.push(i, 0.1) for i in range(40)], proc)
        assert sorted(v["x"] for v in values) == list(range(40))
        pids = {v["pid"] for v in values}
        assert pids == set(children) and len(pids) == 2, (pids, children)
        assert proc.p.pid not in pids, "the parent only supervises"
        if mode in ("gevent", "eventlet"):
            assert {v["proof"] for v in values} == {"patched"}
            assert "restarting the worker" not in proc.out  # the parent never needed patching
        else:
            assert all(v["proof"].startswith(("boostkernel-worker", "boostkernel-fetch")) for v in values)
        code = proc.terminate_and_wait()
    finally:
        proc.kill()
    assert code == 0, proc.out[-3000:]
    assert not any(alive(p) for p in children), "children must be gone when the parent exits"
    for pid in children:  # each child's own log lines, tagged with its pid, reached the parent's output
        assert f"[pid {pid}]" in proc.out


@pytest.mark.parametrize("broker", broker_params())
def test_a_killed_child_is_restarted(broker: str, tmp_path: Path, unique_queue: str) -> None:
    path = write_tasks(tmp_path, unique_queue, "threads", broker)
    probe = load_booster(path)
    probe.purge()
    proc = Proc([BK, "worker", str(path), "--processes", "2"])
    try:
        first = proc.wait_children(2)
        os.kill(first[0], signal.SIGKILL)
        assert wait_until(lambda: len(set(proc.child_pids())) >= 3, 30, 0.05), proc.out[-3000:]
        assert f"worker process {first[0]} died (signal 9); restarting it" in proc.out
        replacement = [p for p in proc.child_pids() if p not in first][0]
        values = collect([probe.push(i) for i in range(20)], proc)
        assert {v["pid"] for v in values} <= {first[1], replacement}
        assert sorted(v["x"] for v in values) == list(range(20))
        assert proc.terminate_and_wait() == 0
    finally:
        proc.kill()


def test_sigterm_lets_in_flight_tasks_finish(tmp_path: Path, unique_queue: str) -> None:
    """SIGTERM on the parent: running tasks finish, prefetched ones go back to the queue, nothing is lost."""
    path = write_tasks(tmp_path, unique_queue, "gevent", "sqlite")
    probe = load_booster(path)
    probe.purge()
    proc = Proc([BK, "worker", str(path), "--processes", "2"])
    try:
        proc.wait_children(2)
        results = [probe.push(i, 2.0) for i in range(8)]  # 2 children x 5 workers: all fetched at once
        assert wait_until(lambda: probe.count() == 0, 20, 0.05)
        time.sleep(0.3)  # let the children start them (this is synchronisation, not a speed assertion)
        t_term = time.time()
        proc.p.send_signal(signal.SIGTERM)
        proc.p.wait(40)
        assert proc.p.returncode == 0, proc.out[-3000:]
    finally:
        proc.kill()
    records = [r.record() for r in results]
    done = [rec for rec in records if rec is not None]
    assert all(rec["status"] == "success" and rec["finished_at"] > t_term for rec in done), done
    assert len(done) >= 5, f"in-flight tasks were lost:\n{proc.out[-3000:]}"
    assert len(done) + probe.count() == 8, "a task neither finished nor went back to the queue"
    assert "stopping gracefully" in proc.out


@pytest.mark.parametrize(("how", "mode"), [("multi_process_consume", "threads"), ("processes_param", "gevent")])
def test_script_starts_processes_itself(how: str, mode: str, tmp_path: Path, unique_queue: str) -> None:
    """``python script.py`` with ``multi_process_consume(2)`` or ``processes=2`` + ``consume()``."""
    path = write_tasks(tmp_path, unique_queue, mode, "sqlite", processes=2 if how == "processes_param" else 1)
    probe = load_booster(path)
    probe.purge()
    proc = Proc([sys.executable, str(path), *(["multi"] if how == "multi_process_consume" else [])])
    try:
        children = proc.wait_children(2)
        values = collect([probe.push(i) for i in range(20)], proc)
        pids = {v["pid"] for v in values}
        assert pids <= set(children) and proc.p.pid not in pids
        if mode == "gevent":
            assert {v["proof"] for v in values} == {"patched"}
        assert proc.terminate_and_wait() == 0, proc.out[-3000:]
    finally:
        proc.kill()


def test_a_crash_loop_gives_up_with_the_error(tmp_path: Path, unique_queue: str) -> None:
    path = tmp_path / f"broken_{unique_queue}.py"
    path.write_text(textwrap.dedent(f'''
        from boostkernel import boost
        from boostkernel.worker import is_child_process

        @boost("{unique_queue}", broker="sqlite")
        def task(): pass

        if is_child_process():  # in a worker process, not in the parent
            raise RuntimeError("cannot connect to the thing this module needs")
    '''))
    proc = Proc([BK, "worker", str(path), "--processes", "2"])
    try:
        proc.p.wait(90)
    finally:
        proc.kill()
    proc._reader.join(5)
    assert proc.p.returncode == 1, proc.out[-3000:]
    assert "cannot connect to the thing this module needs" in proc.out
    assert "not restarting it" in proc.out


def test_a_child_that_dies_during_a_slow_start_is_a_crash_loop_too(tmp_path: Path, unique_queue: str) -> None:
    """Counted by readiness, not by the clock: a child that takes longer than FAST_DEATH to import its module
    and then dies has still never consumed (on a loaded machine a healthy start can take that long)."""
    from boostkernel.overlay import ProcessGroup

    path = tmp_path / f"slowbroken_{unique_queue}.py"
    path.write_text(textwrap.dedent(f'''
        import time
        from boostkernel import boost
        from boostkernel.worker import is_child_process

        @boost("{unique_queue}", broker="sqlite")
        def task(): pass

        if is_child_process():
            time.sleep({ProcessGroup.FAST_DEATH + 0.5})
            raise RuntimeError("the database this module needs is not there")
    '''))
    proc = Proc([BK, "worker", str(path), "--processes", "2"])
    try:
        proc.p.wait(90)
    finally:
        proc.kill()
    proc._reader.join(5)
    assert proc.p.returncode == 1, proc.out[-3000:]
    assert "not restarting it" in proc.out


def test_consume_at_import_time_in_a_child_is_a_clear_error(tmp_path: Path, unique_queue: str) -> None:
    path = tmp_path / f"noguard_{unique_queue}.py"
    path.write_text(textwrap.dedent(f'''
        from boostkernel import boost

        @boost("{unique_queue}", broker="sqlite")
        def task(): pass

        task.multi_process_consume(2)   # no `if __name__ == "__main__":` guard
        task.wait()
    '''))
    proc = Proc([sys.executable, str(path)])
    try:
        proc.p.wait(90)
    finally:
        proc.kill()
    proc._reader.join(5)
    assert 'if __name__ == "__main__":' in proc.out
    assert "not restarting it" in proc.out


def test_an_in_process_broker_cannot_feed_worker_processes(unique_queue: str) -> None:
    from boostkernel import boost
    from boostkernel.errors import ConfigError

    @boost(unique_queue, broker="memory")
    def task() -> None:
        pass

    with pytest.raises(ConfigError, match="broker shared by processes"):
        task.multi_process_consume(2)
