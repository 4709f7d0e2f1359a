"""boostkernel.green: the base that gevent and eventlet executors share (patch check, back-pressure, timeouts).

The library here is a small in-test one built on OS threads, so the base is checked without gevent: the
gevent and eventlet plugins run their real contract suites on top of it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest

from boostkernel import ConfigError, GreenExecutor, TaskTimeout

_patched: set[str] = set()


class _Job:
    is_async = False

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def run(self) -> None:
        self.fn()

    async def run_async(self) -> None:  # pragma: no cover - not used by green executors
        self.fn()


class ThreadGreen(GreenExecutor):
    name = "threadgreen"
    library = "threadlib"
    required_patches = ("socket", "time")
    patch_lines = "    import threadlib\n    threadlib.patch()"

    @classmethod
    def is_module_patched(cls, module: str) -> bool:
        return module in _patched

    @classmethod
    def patch_all(cls) -> None:
        _patched.update(cls.required_patches)

    def __init__(self, max_workers: int, **options: Any) -> None:
        super().__init__(max_workers, **options)
        self._threads: list[threading.Thread] = []

    def _spawn(self, job: Any) -> None:
        t = threading.Thread(target=self._run_job, args=(job,))
        self._threads.append(t)
        t.start()

    def _wait_all(self, timeout: float | None) -> None:
        for t in self._threads:
            t.join(timeout)

    def _timeout(self, seconds: float, exc: BaseException) -> AbstractContextManager[Any]:
        @contextmanager
        def expire_after_the_call() -> Iterator[None]:  # a cooperative library raises at the next switch
            yield
            if seconds <= 0:
                raise exc
        return expire_after_the_call()


@pytest.fixture(autouse=True)
def _unpatched() -> Iterator[None]:
    _patched.clear()
    yield
    _patched.clear()


def test_an_unpatched_process_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError) as info:
        ThreadGreen(4)
    msg = str(info.value)
    assert "concurrency='threadgreen' needs threadlib's monkey-patching" in msg
    assert "(missing: socket, time)" in msg
    assert "boostkernel worker your.module --concurrency threadgreen" in msg
    assert msg.endswith("    import threadlib\n    threadlib.patch()")


def test_prepare_process_patches_once_and_is_idempotent() -> None:
    assert ThreadGreen.missing_patches() == ["socket", "time"]
    ThreadGreen.prepare_process()
    ThreadGreen.prepare_process()
    assert ThreadGreen.missing_patches() == []
    ThreadGreen(2).shutdown()


def test_runs_jobs_survives_a_crashing_one_and_refuses_after_shutdown(caplog: pytest.LogCaptureFixture) -> None:
    ThreadGreen.prepare_process()
    ex = ThreadGreen(2)
    ran: list[int] = []
    ex.submit(_Job(lambda: ran.append(1)))
    ex.submit(_Job(lambda: 1 / 0))
    ex.submit(_Job(lambda: ran.append(2)))
    ex.shutdown(wait=True, timeout=10)
    assert sorted(ran) == [1, 2]
    assert any("job crashed" in r.getMessage() and r.name == "boostkernel.threadgreen" for r in caplog.records)
    with pytest.raises(RuntimeError, match="shut down"):
        ex.submit(_Job(lambda: None))


def test_call_with_timeout_uses_the_librarys_timeout() -> None:
    ThreadGreen.prepare_process()
    ex = ThreadGreen(1)
    assert ex.call_with_timeout(lambda: 5, 1.0) == 5
    with pytest.raises(TaskTimeout, match="exceeded its 0s timeout"):
        ex.call_with_timeout(lambda: None, 0)
