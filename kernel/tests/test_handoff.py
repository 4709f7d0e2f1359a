"""Leader/follower fetching (brokers declaring ``fetch_any_thread``, ``threads`` mode): a lone message runs on
the thread that fetched it while the standby thread fetches, within the ``workers`` bound, and stop() is prompt."""

from __future__ import annotations

import threading
import time
import uuid

from boostkernel import boost
from boostkernel.testing import wait_until


def q() -> str:
    return f"h_{uuid.uuid4().hex[:10]}"


def test_a_lone_message_runs_on_the_fetching_thread() -> None:
    names: list[str] = []

    @boost(q(), broker="memory", concurrency="threads", workers=4)
    def where() -> None:
        names.append(threading.current_thread().name)

    where.consume()
    try:
        for _ in range(5):  # one at a time: each is the only message the fetch finds
            n = len(names)
            where.push()
            assert wait_until(lambda: len(names) == n + 1, timeout=5)
        assert all(name.startswith("boostkernel-fetch-") for name in names), names
    finally:
        where.stop(5)


def test_a_long_lone_task_does_not_stop_fetching() -> None:
    release = threading.Event()
    done: list[int] = []

    @boost(q(), broker="memory", concurrency="threads", workers=4)
    def work(i: int) -> None:
        if i == 0:
            release.wait(10)
        done.append(i)

    work.consume()
    try:
        work.push(0)  # runs on a fetching thread and holds it
        assert wait_until(lambda: work._consumer is not None and bool(work._consumer.in_flight), timeout=5)
        work.push_many([(i,) for i in range(1, 6)])
        assert wait_until(lambda: sorted(done) == [1, 2, 3, 4, 5], timeout=5), done
        release.set()
        assert wait_until(lambda: len(done) == 6, timeout=5)
    finally:
        release.set()
        work.stop(5)


def test_the_lone_task_counts_against_workers() -> None:
    running, peak = [0], [0]
    lock = threading.Lock()
    gate = threading.Event()

    @boost(q(), broker="memory", concurrency="threads", workers=2)
    def busy(i: int) -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        gate.wait(0.3)
        with lock:
            running[0] -= 1

    busy.consume()
    try:
        busy.push(0)  # lone: runs on the fetching thread
        assert wait_until(lambda: running[0] == 1, timeout=5)
        busy.push_many([(i,) for i in range(1, 7)])
        assert wait_until(lambda: busy._consumer is not None and busy._consumer.processed >= 7, timeout=15)
        assert peak[0] == 2, f"{peak[0]} tasks ran at once with workers=2"
    finally:
        gate.set()
        busy.stop(5)


def test_stop_is_prompt_with_a_standby_thread() -> None:
    @boost(q(), broker="memory", concurrency="threads", workers=2)
    def idle() -> None:
        pass

    idle.consume()
    consumer = idle._consumer
    assert consumer is not None and len(consumer._threads) == 2
    t0 = time.monotonic()
    idle.stop(5)
    assert time.monotonic() - t0 < 0.9, "a standby thread kept stop() waiting for its poll timeout"
    assert not any(t.is_alive() for t in consumer._threads)
