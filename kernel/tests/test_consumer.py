"""The consume loop: bad input to the dead-letter queue, back-pressure, graceful stop."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from boostkernel import boost
from boostkernel.broker import Outgoing
from boostkernel.testing import wait_until


def q() -> str:
    return f"c_{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize("broker", ["memory", "sqlite"])
def test_malformed_and_misfit_messages_go_to_dlq_and_good_ones_run(broker: str) -> None:
    done: list[int] = []
    lock = threading.Lock()

    @boost(q(), broker=broker, workers=8)
    def work(i: int) -> None:
        with lock:
            done.append(i)

    work.push_many([(i,) for i in range(500)])
    raw = work.broker
    raw.publish(Outgoing("bad-bytes", b"\xff\x00 not json"))
    raw.publish(Outgoing("bad-args", b'{"v": 1, "id": "bad-args", "args": [], "kwargs": {"nope": 1}}'))
    raw.publish(Outgoing("bad-array", b"[1,2,3]"))
    work.push_many([(i,) for i in range(500, 1000)])
    work.consume()
    consumer = work._consumer
    thread = consumer._thread if consumer else None
    try:
        assert wait_until(lambda: len(done) == 1000 and len(work.dead_letters()) == 3, timeout=30)
        reasons = {r.id: r.reason for r in work.dead_letters()}
        assert reasons["bad-bytes"].startswith("decode error: not valid JSON")
        assert "arguments do not fit work(i: int)" in reasons["bad-args"]
        assert "expected a JSON object" in reasons["bad-array"]
        assert sorted(done) == list(range(1000))
        assert consumer is work._consumer and thread is not None and thread.is_alive(), "the loop never restarted"
    finally:
        work.stop()


def test_graceful_stop_returns_prefetched_and_finishes_running() -> None:
    started = threading.Event()
    finished: list[int] = []

    @boost(q(), broker="sqlite", workers=2, prefetch=20)
    def slow(i: int) -> None:
        started.set()
        time.sleep(0.5)
        finished.append(i)

    slow.push_many([(i,) for i in range(30)])
    slow.consume()
    assert started.wait(10)
    t0 = time.monotonic()
    slow.stop(timeout=10)
    assert time.monotonic() - t0 < 5
    running_then = len(finished)
    assert 1 <= running_then <= 4, "only the tasks already running finished"
    assert slow.count() == 30 - running_then, "every prefetched message is back in the queue"


def test_back_pressure_bounds_prefetch() -> None:
    release = threading.Event()

    @boost(q(), broker="memory", workers=3, prefetch=3)
    def hold(i: int) -> None:
        release.wait(10)

    hold.push_many([(i,) for i in range(50)])
    hold.consume()
    try:
        time.sleep(0.5)
        # 3 running + at most one prefetched batch of 3 waiting for a free slot
        assert hold.count() >= 50 - 6
    finally:
        release.set()
        hold.stop()


def test_a_message_that_crashed_a_worker_runs_alone() -> None:
    """``Delivery.crashes > 0``: the kernel waits for its running tasks, runs the suspect alone, then goes on,
    so a second death is charged to the suspect only."""
    running: set[int] = set()
    beside: dict[int, set[int]] = {}
    done: list[int] = []
    lock = threading.Lock()
    suspects = {5, 20}

    @boost(q(), broker="sqlite", workers=8)
    def work(i: int) -> None:
        with lock:
            running.add(i)
            for s in suspects & running:
                beside.setdefault(s, set()).update(running - {s})
        time.sleep(0.02)
        with lock:
            running.discard(i)
            done.append(i)

    work.push_many([(i,) for i in range(40)])
    b = work.broker
    b.db.write(lambda c: c.execute(  # type: ignore[attr-defined]
        "UPDATE bk_messages SET crashes=1 WHERE queue=? AND seq IN "
        "(SELECT seq FROM bk_messages WHERE queue=? ORDER BY seq LIMIT 1 OFFSET 5) OR "
        "seq IN (SELECT seq FROM bk_messages WHERE queue=? ORDER BY seq LIMIT 1 OFFSET 20)",
        (work.queue, work.queue, work.queue)))
    work.consume()
    try:
        assert wait_until(lambda: len(done) == 40, timeout=30)
    finally:
        work.stop()
    assert beside == {5: set(), 20: set()}, f"suspects ran beside other tasks: {beside}"
    assert sorted(done) == list(range(40))
