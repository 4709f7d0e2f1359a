"""The contiguous-offset tracker (pure Python: no server needed)."""

from __future__ import annotations

import random
import threading
import time

from boostkernel_kafka.offsets import OffsetTracker


def test_commit_stops_at_the_lowest_unfinished_offset() -> None:
    t = OffsetTracker()
    t.assign([0])
    epochs = [t.add(0, off) for off in range(10, 15)]
    assert t.to_commit() == {0: 10}  # nothing finished: resume at the first record
    t.done(0, 12, epochs[0])
    t.done(0, 13, epochs[0])
    assert t.to_commit() == {0: 10}  # 10 and 11 still run: 12/13 finishing must not move the commit
    t.done(0, 10, epochs[0])
    assert t.to_commit() == {0: 11}
    t.done(0, 11, epochs[0])
    assert t.to_commit() == {0: 14}
    t.committed({0: 14})
    assert t.to_commit() == {}
    t.done(0, 14, epochs[0])
    assert t.to_commit() == {0: 15}
    assert t.unfinished == 0


def test_gaps_in_offsets_are_fine() -> None:
    t = OffsetTracker()
    t.assign([3])
    e = t.add(3, 5)
    t.add(3, 9)  # offsets 6-8 do not exist (compaction, transaction markers)
    t.done(3, 9, e)
    assert t.to_commit() == {3: 5}
    t.done(3, 5, e)
    assert t.to_commit() == {3: 10}


def test_stale_acks_after_revoke_are_ignored() -> None:
    t = OffsetTracker()
    t.assign([0, 1])
    e0 = t.add(0, 0)
    e1 = t.add(1, 0)
    t.revoke([0])
    assert t.done(0, 0, e0) is False
    t.assign([0])  # assigned again: a new epoch, old deliveries stay stale
    assert t.done(0, 0, e0) is False
    assert t.done(1, 0, e1) is True
    assert t.to_commit() == {1: 1}
    assert t.unfinished == 0


def test_double_ack_counts_once_and_close_ignores_acks() -> None:
    t = OffsetTracker()
    t.assign([0])
    e = t.add(0, 0)
    t.add(0, 1)
    assert t.done(0, 0, e) is True
    assert t.done(0, 0, e) is False
    assert t.unfinished == 1
    t.close()
    assert t.done(0, 1, e) is False


def test_many_threads_finishing_in_random_order() -> None:
    t = OffsetTracker()
    t.assign([0, 1])
    offsets = [(p, o) for p in (0, 1) for o in range(2000)]
    epochs = {p: t.add(p, o) for p, o in offsets}
    random.shuffle(offsets)
    chunks = [offsets[i::8] for i in range(8)]
    seen_commits: list[dict[int, int]] = []

    def work(chunk: list[tuple[int, int]]) -> None:
        for p, o in chunk:
            t.done(p, o, epochs[p])

    def committer() -> None:
        while t.unfinished:
            c = t.to_commit()
            seen_commits.append(c)
            t.committed(c)

    threads = [threading.Thread(target=work, args=(c,)) for c in chunks] + [threading.Thread(target=committer)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert t.to_commit() in ({0: 2000, 1: 2000}, {0: 2000}, {1: 2000}, {})
    final = {**{k: v for c in seen_commits for k, v in c.items()}, **t.to_commit()}
    assert final == {0: 2000, 1: 2000}
    # commits only ever move forward
    last: dict[int, int] = {}
    for c in seen_commits:
        for p, o in c.items():
            assert o >= last.get(p, 0)
            last[p] = o


def test_wait_until_returns_when_the_watermark_reaches_the_target() -> None:
    t = OffsetTracker()
    t.assign([0])
    e = t.add(0, 0)
    t.add(0, 1)
    threading.Timer(0.1, lambda: t.done(0, 0, e)).start()
    assert t.wait_until({0: 1}, 5.0) is True
    assert t.wait_until({0: 2}, 0.1) is False


def test_is_pending_until_finished_revoked_or_stale() -> None:
    t = OffsetTracker()
    t.assign([0, 1])
    e0 = t.add(0, 0)
    t.add(0, 1)
    t.add(0, 2)
    e1 = t.add(1, 7)
    assert [t.is_pending(0, off, e0) for off in (0, 1, 2)] == [True, True, True]
    t.done(0, 2, e0)  # finished above an unfinished one: still in ``done``
    t.done(0, 0, e0)  # finished and popped below the watermark
    assert [t.is_pending(0, off, e0) for off in (0, 1, 2)] == [False, True, False]
    assert t.is_pending(0, 1, e0 + 1000) is False  # another epoch's delivery
    t.revoke([1])
    assert t.is_pending(1, 7, e1) is False


def test_wait_until_ends_when_stop_is_set() -> None:
    t = OffsetTracker()
    t.assign([0])
    t.add(0, 0)
    stop = threading.Event()
    threading.Timer(0.1, lambda: (stop.set(), t.notify())).start()
    started = time.monotonic()
    assert t.wait_until({0: 1}, 30.0, stop.is_set) is False
    assert time.monotonic() - started < 5.0
