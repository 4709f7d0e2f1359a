"""The thread pool grows with demand up to max_workers and shrinks back when idle."""

from __future__ import annotations

import threading
import time

from boostkernel_threads.executor import ThreadsExecutor

from boostkernel.testing import wait_until


class _Job:
    is_async = False

    def __init__(self, fn: object) -> None:
        self.fn = fn

    def run(self) -> None:
        self.fn()  # type: ignore[operator]

    async def run_async(self) -> None:  # pragma: no cover - threads never await
        self.fn()  # type: ignore[operator]


def test_grows_on_demand_and_shrinks_when_idle() -> None:
    ex = ThreadsExecutor(8, idle_timeout=0.3)
    assert ex.thread_count == 0, "no thread before the first job"
    for _ in range(20):
        ex.submit(_Job(lambda: None))
    assert ex.thread_count <= 8
    release = threading.Event()
    for _ in range(8):
        ex.submit(_Job(lambda: release.wait(5)))
    assert wait_until(lambda: ex.thread_count == 8, 5), "grows to the maximum under load"
    release.set()
    assert wait_until(lambda: ex.thread_count == 0, 5), "idle threads exit after idle_timeout"
    ex.submit(_Job(lambda: None))
    assert wait_until(lambda: ex.thread_count >= 1, 2)
    ex.shutdown(wait=True, timeout=5)


def test_sequential_jobs_reuse_one_thread() -> None:
    ex = ThreadsExecutor(16, idle_timeout=5)
    done = threading.Semaphore(0)
    for _ in range(100):
        ex.submit(_Job(done.release))
        done.acquire()
        time.sleep(0.001)
    assert ex.thread_count == 1, "an idle thread is reused instead of starting another"
    ex.shutdown(wait=True, timeout=5)
