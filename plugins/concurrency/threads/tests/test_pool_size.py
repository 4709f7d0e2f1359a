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


def test_a_burst_of_blocking_jobs_reaches_every_thread() -> None:
    """Threads are woken one after another (each woken thread sends the next): 16 jobs that can only finish
    together (a barrier of 16) must all be running at once."""
    ex = ThreadsExecutor(16, idle_timeout=5)
    barrier = threading.Barrier(16, timeout=10)
    passed: list[None] = []

    def job() -> None:
        barrier.wait()
        passed.append(None)

    for _ in range(16):
        ex.submit(_Job(job))
    assert wait_until(lambda: len(passed) == 16, 15), f"only {len(passed)} of 16 jobs ran side by side"
    ex.shutdown(wait=True, timeout=5)


def test_no_job_is_stranded_while_threads_time_out() -> None:
    """Idle threads shrink (idle_timeout 1 ms) while jobs keep coming from 4 submitters: a wake-up that
    meets a thread timing out is taken by another thread, never lost, so every job runs."""
    ex = ThreadsExecutor(8, idle_timeout=0.001)
    done = threading.Semaphore(0)
    n = 2000

    def submitter() -> None:
        for i in range(n // 4):
            ex.submit(_Job(done.release))
            if i % 50 == 0:
                time.sleep(0.002)  # let threads go idle and time out

    threads = [threading.Thread(target=submitter) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    ran = sum(done.acquire(timeout=10) for _ in range(n))
    assert ran == n, f"{n - ran} of {n} jobs never ran"
    ex.shutdown(wait=True, timeout=5)


def test_a_burst_of_short_jobs_wakes_few_threads() -> None:
    """1,000 no-op jobs submitted at once (the consumer's prefetched batch) are run by the threads already
    awake: far fewer wake-ups than jobs (before, every submit woke an idle thread of its own)."""
    ex = ThreadsExecutor(16, idle_timeout=5)
    warm = threading.Barrier(17, timeout=10)
    for _ in range(16):  # 16 threads, all idle
        ex.submit(_Job(warm.wait))
    warm.wait()
    assert wait_until(lambda: ex.idle == 16, 5)
    calls = 0
    call_one = ex._call_one

    def counting() -> threading.Thread | None:
        nonlocal calls
        calls += 1
        return call_one()

    ex._call_one = counting  # type: ignore[method-assign]
    done = threading.Semaphore(0)
    for _ in range(1000):
        ex.submit(_Job(done.release))
    assert sum(done.acquire(timeout=10) for _ in range(1000)) == 1000
    assert calls < 500, f"{calls} wake-ups for 1,000 short jobs"
    ex.shutdown(wait=True, timeout=5)


def test_a_blocked_submit_goes_on_as_soon_as_a_slot_is_free() -> None:
    """A full pool of long jobs: when one slot frees, a blocked submit starts its job at once (it does not
    wait for a quarter of the pool to be free while the other jobs run on)."""
    ex = ThreadsExecutor(4, idle_timeout=5)
    release, first = threading.Event(), threading.Event()
    ex.submit(_Job(first.wait))
    for _ in range(3):
        ex.submit(_Job(lambda: release.wait(20)))
    started = threading.Event()
    submitter = threading.Thread(target=lambda: ex.submit(_Job(started.set)))
    submitter.start()
    time.sleep(0.05)
    assert not started.is_set(), "the pool was full: the fifth job cannot have started"
    first.set()
    assert started.wait(5), "one slot was free, but the blocked submit did not go on"
    release.set()
    submitter.join(5)
    ex.shutdown(wait=True, timeout=5)
