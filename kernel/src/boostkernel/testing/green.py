"""The contract of green-thread executors (gevent, eventlet), run in a monkey-patched interpreter.

Such a library needs the whole process patched before anything else is imported, and patching the shared
pytest process would turn every other plugin's threads into green threads. So a plugin's test file holds
two things: a subclass of :class:`GreenExecutorContract` naming the executor, defined only when the
process is patched, and otherwise one plain test that calls :func:`run_patched` with the library's patch
line, which runs the file again in a fresh interpreter that patches first. See the gevent and eventlet
plugins' ``tests/test_contract.py``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import pytest

from ..errors import ConfigError, TaskTimeout
from ..executor import Executor
from ..green import GreenExecutor
from .contracts import ExecutorContract


class GreenExecutorContract(ExecutorContract):
    """:class:`ExecutorContract` plus what cooperative green threads must do. Set ``executor_class``."""

    executor_class: ClassVar[type[Executor]]
    expected_failures = {
        "test_call_with_timeout_stops_long_call":
            "green threads have no preemption: a pure-Python loop that never yields cannot be interrupted",
    }
    busy_loop_seconds = 2.0

    @pytest.fixture
    def make_executor(self) -> Callable[[int], Executor]:
        return self.executor_class

    def test_timeout_stops_a_call_that_yields(self) -> None:
        ex = self.executor_class(4)
        t0 = time.monotonic()
        with pytest.raises(TaskTimeout):
            ex.call_with_timeout(lambda: time.sleep(10), 0.2)  # patched sleep: a cooperative point
        assert time.monotonic() - t0 < 2
        assert ex.call_with_timeout(lambda: 42, 1.0) == 42
        ex.shutdown()

    def test_interrupt_stops_a_running_task(self) -> None:
        ex = self.executor_class(2)
        handles: list[object] = []
        outcome: list[str] = []
        started = threading.Event()

        def run() -> None:
            handles.append(ex.current_handle())
            started.set()
            try:
                time.sleep(10)
                outcome.append("finished")
            except KeyboardInterrupt:
                outcome.append("interrupted")

        ex.submit(self.job(run))
        assert started.wait(2)
        assert ex.interrupt(handles[0], KeyboardInterrupt)
        ex.shutdown(wait=True, timeout=5)
        assert outcome == ["interrupted"]

    def test_many_sleeping_tasks_overlap(self) -> None:
        ex = self.executor_class(500)
        done: list[int] = []

        def sleeper(i: int) -> Callable[[], None]:
            def run() -> None:
                time.sleep(0.2)
                done.append(i)
            return run

        t0 = time.monotonic()
        for i in range(1000):
            ex.submit(self.job(sleeper(i)))
        ex.shutdown(wait=True, timeout=30)
        elapsed = time.monotonic() - t0
        assert sorted(done) == list(range(1000))
        # 1000 tasks of 0.2 s on 500 green threads: two waves, far from the 200 s of running them in turn.
        assert elapsed < 20, elapsed


def run_patched(test_file: str, patch: str, min_passed: int = 7, timeout: float = 240.0) -> None:
    """Run ``test_file`` with pytest in a fresh interpreter that executes ``patch`` first; require at least
    ``min_passed`` passed tests (the contract's and the mode's own, none skipped) and the one known xfail."""
    root = Path(test_file).resolve().parents[4]
    code = (f"{patch}\n"
            "import sys, pytest\n"
            f"sys.exit(pytest.main([{str(Path(test_file))!r}, '-q', '-p', 'no:cacheprovider']))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    m = re.search(r"(\d+) passed", out)
    assert m and int(m.group(1)) >= min_passed, out[-4000:]
    assert "1 xfailed" in out, out[-4000:]


class UnpatchedGreenContract:
    """In a process that was not monkey-patched, a green mode refuses to start and says exactly what to do.

    Run it in the plain (unpatched) pytest process; set ``executor_class``."""

    executor_class: ClassVar[type[GreenExecutor]]

    def test_unpatched_process_fails_with_the_fix(self) -> None:
        with pytest.raises(ConfigError) as info:
            self.executor_class(10)
        msg = str(info.value)
        assert "boostkernel worker" in msg
        assert self.executor_class.patch_lines and self.executor_class.patch_lines in msg

    def test_consume_in_an_unpatched_process_fails_at_consume_time(self, unique_queue: str) -> None:
        from ..booster import boost

        @boost(unique_queue, broker="memory", concurrency=self.executor_class.name, workers=5)
        def task() -> None:
            pass

        task.push()  # publishing needs no patching: a producer (a web app …) stays as it is
        with pytest.raises(ConfigError, match=re.escape(self.executor_class.patch_lines.splitlines()[-1].strip())):
            task.consume()

    def test_prepare_process_patches_everything_the_mode_needs(self) -> None:
        cls = self.executor_class
        code = (f"from {cls.__module__} import {cls.__name__} as E\n"
                "assert E.missing_patches(), 'fresh interpreter should start unpatched'\n"
                "E.prepare_process(); E.prepare_process()\n"
                "assert not E.missing_patches(), E.missing_patches()\n"
                "E(3).shutdown(); print('ok')\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                             text=True, timeout=60, env={**os.environ})
        assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
