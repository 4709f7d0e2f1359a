"""The reference system's own examples, with only the import line changed, run as scripts in subprocesses.

Each script consumes until it is stopped, as in the reference system (its consumers never let the process
end by itself): the test waits for the expected output, sends SIGTERM, and checks a clean exit.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from boostkernel.testing.helpers import wait_until

EXAMPLES = Path(__file__).parent / "examples"


class Script:
    def __init__(self, name: str, tmp_path: Path, env: dict[str, str] | None = None) -> None:
        self.lines: list[tuple[float, str]] = []
        # the scripts keep consuming after their main thread ends, as in the reference system
        base = {k: v for k, v in os.environ.items() if k != "BOOSTKERNEL_FUNBOOST_EXIT_WITH_MAIN"}
        full_env = base | {"PYTHONUNBUFFERED": "1", "BOOSTKERNEL_DATA_DIR": str(tmp_path / "data")} | (env or {})
        self.proc = subprocess.Popen([sys.executable, str(EXAMPLES / name)], cwd=tmp_path, env=full_env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.err: list[str] = []
        _started.append(self)
        self.readers = [threading.Thread(target=self._read, daemon=True),
                        threading.Thread(target=lambda: self.err.extend(self.proc.stderr or []), daemon=True)]
        for t in self.readers:
            t.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def output(self) -> list[str]:
        return [line for _, line in self.lines]

    def missing(self, expected: set[str]) -> set[str]:
        # print() writes the text and the newline separately, so two threads' lines may share a line
        # ("3 + 4 = 71 + 2 = 3"): look for each expected text anywhere in the output
        text = "\n".join(self.output())
        return {e for e in expected if e not in text}

    def wait_for(self, expected: set[str], timeout: float = 60) -> None:
        ok = wait_until(lambda: not self.missing(expected) or self.proc.poll() is not None, timeout)
        missing = self.missing(expected)
        assert ok and not missing, (f"missing {sorted(missing)[:5]}; exit={self.proc.poll()}; "
                                    f"out={self.output()[-10:]}; stderr:\n{''.join(self.err)[-3000:]}")

    def stop(self) -> int:
        assert self.proc.poll() is None, "the script ended by itself; the reference system keeps consuming"
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for t in self.readers:
                t.join(5)
            for pipe in (self.proc.stdout, self.proc.stderr):
                if pipe is not None:
                    pipe.close()


_started: list[Script] = []


@pytest.fixture(autouse=True)
def _kill_leftovers() -> Iterator[None]:
    yield
    while _started:
        script = _started.pop()
        proc = script.proc
        if proc.poll() is None:  # a failed test: do not leave the consumer running
            proc.kill()
            proc.wait()
        for t in script.readers:
            t.join(5)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def test_memory_queue_ten_threads(tmp_path: Path) -> None:
    s = Script("ex_1_2_1_memory_threads.py", tmp_path)
    # print() from ten threads may interleave ("2826" + ""): compare the printed characters, not the lines
    want = sorted("".join(str(i) for i in range(30)))

    def printed() -> list[str]:
        return sorted("".join(s.output()).replace(" ", ""))

    assert wait_until(lambda: printed() == want or s.proc.poll() is not None, 60), (printed(), "".join(s.err))
    assert printed() == want
    assert s.stop() == 0
    assert "Traceback" not in "".join(s.err)


def _qps_example(name: str, tmp_path: Path) -> None:
    s = Script(name, tmp_path)
    expected = {f"{i} + {i * 2} = {i * 3}" for i in range(10)}
    s.wait_for(expected)
    times = sorted(t for t, line in s.lines if any(e in line for e in expected))
    # qps=5: ten starts take at least 9/5 s; a little slack for the first second's burst
    assert times[-1] - times[0] >= 1.4, f"qps=5 not respected: 10 runs in {times[-1] - times[0]:.2f}s"
    assert s.stop() == 0
    assert "Traceback" not in "".join(s.err)


def test_sqlite_qps_example(tmp_path: Path) -> None:
    _qps_example("ex_1_3_sqlite_qps.py", tmp_path)


def _purge_redis(queue: str, url: str | None = None) -> None:
    from boostkernel import boost

    def purge_only() -> None:
        pass

    b = boost(queue, broker="redis", **({"broker_url": url} if url else {}))(purge_only)
    b.purge()
    b.broker.close()


@pytest.mark.service("redis")
def test_redis_qps_example(tmp_path: Path) -> None:
    _purge_redis("task_queue_name1_redis")
    _qps_example("ex_1_3_redis_qps.py", tmp_path)


@pytest.mark.service("redis")
def test_older_api_get_consumer(tmp_path: Path) -> None:
    s = Script("ex_004_get_consumer.py", tmp_path)
    s.wait_for({"1 + 2 = 3", "3 + 4 = 7"})

    def result_printed() -> bool:  # print(async_result.result): a "7" besides the task's own lines
        rest = "\n".join(line for line in s.output() if not line.startswith("queue_test569:"))
        return "7" in rest.replace("3 + 4 = 7", "").replace("1 + 2 = 3", "")

    assert wait_until(result_printed, 30), s.output()
    assert s.stop() == 0
    assert "Traceback" not in "".join(s.err)


def test_multi_process_consume(tmp_path: Path) -> None:
    s = Script("ex_multi_process.py", tmp_path)

    def runs() -> list[tuple[str, str, str]]:
        # print() writes the text and the newline separately, so two threads' lines may share a line
        # ("3 squared is 9 in process 2048.4 squared is 16 in process 2048."): find every run anywhere
        return re.findall(r"(\d+) squared is (\d+) in process (\d+)\.", "".join(s.output()))

    assert wait_until(lambda: len(runs()) >= 8 or s.proc.poll() is not None, 60), (s.output(), "".join(s.err))
    assert {(int(x), int(sq)) for x, sq, _ in runs()} == {(i, i * i) for i in range(8)}
    pids = {int(pid) for _, _, pid in runs()}
    assert s.proc.pid not in pids  # run by the child processes, not the script's process
    assert s.stop() == 0
    assert "Traceback" not in "".join(s.err)
