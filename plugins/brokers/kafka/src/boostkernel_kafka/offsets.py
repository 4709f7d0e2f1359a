"""Per-partition tracking of finished offsets: commit the highest *contiguous* finished offset.

Many threads may work records of one partition at once and finish them in any order. Committing the
offset of whatever finished last would lose the records still running below it if the process died
(faust#682, reactor-kafka#253). :class:`OffsetTracker` therefore keeps, per partition, the offsets that
were handed out and not finished yet, and reports as committable only ``lowest unfinished offset`` (or
``last seen offset + 1`` when nothing is unfinished): after a kill -9 the group resumes at the first
record that had not finished, so nothing is lost and at most the in-flight window runs twice.

Used by both Kafka plugins (kafka-python and confluent-kafka). Pure Python, thread-safe, no client import.

Each assignment of a partition gets an *epoch*; a delivery carries the epoch it was read under, and an
ack for an older epoch (the partition was revoked and perhaps re-assigned since) is ignored: its offset
may already be owned by another member, which will run the record again (at-least-once).
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable, Iterable


class _Partition:
    __slots__ = ("epoch", "pending", "done", "next", "committed")

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.pending: list[int] = []
        """Min-heap of offsets handed out (buffered or running), finished ones removed lazily."""
        self.done: set[int] = set()
        """Finished offsets still inside ``pending``."""
        self.next: int | None = None
        """Last offset seen + 1."""
        self.committed: int | None = None
        """The offset last committed (by us) for this partition."""

    def watermark(self) -> int | None:
        pending, done = self.pending, self.done
        while pending and pending[0] in done:
            done.discard(heapq.heappop(pending))
        if pending:
            return pending[0]
        return self.next


class OffsetTracker:
    """Thread-safe: the poll thread calls ``assign``/``add``/``revoke``/``to_commit``; any thread calls ``done``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parts: dict[int, _Partition] = {}
        self._epoch = 0
        self._unfinished = 0
        self.closed = False
        self.changed = threading.Condition(self._lock)

    # --- assignment --------------------------------------------------------------------------
    def assign(self, partitions: Iterable[int]) -> None:
        with self._lock:
            for p in partitions:
                self._epoch += 1
                old = self._parts.get(p)
                if old is not None:
                    self._unfinished -= len(old.pending) - len(old.done)
                self._parts[p] = _Partition(self._epoch)

    def revoke(self, partitions: Iterable[int]) -> None:
        """Forget these partitions: later acks of their deliveries are ignored."""
        with self._lock:
            for p in partitions:
                old = self._parts.pop(p, None)
                if old is not None:
                    self._unfinished -= len(old.pending) - len(old.done)
            self.changed.notify_all()

    def epoch(self, partition: int) -> int:
        with self._lock:
            part = self._parts.get(partition)
            return part.epoch if part is not None else -1

    def assigned(self) -> list[int]:
        with self._lock:
            return list(self._parts)

    # --- records -----------------------------------------------------------------------------
    def add(self, partition: int, offset: int) -> int:
        """Record ``offset`` as handed out; return the epoch to put in the delivery's tag (-1: not assigned)."""
        with self._lock:
            part = self._parts.get(partition)
            if part is None:
                return -1
            heapq.heappush(part.pending, offset)
            if part.next is None or offset + 1 > part.next:
                part.next = offset + 1
            self._unfinished += 1
            return part.epoch

    def done(self, partition: int, offset: int, epoch: int) -> bool:
        """Mark one offset finished. Returns False (and changes nothing) for a stale or unknown delivery."""
        with self._lock:
            part = self._parts.get(partition)
            if self.closed or part is None or part.epoch != epoch or offset in part.done:
                return False
            part.done.add(offset)
            self._unfinished -= 1
            self.changed.notify_all()
            return True

    def skip_to(self, partition: int, dropped: Iterable[int], end: int) -> None:
        """Purge by a member that consumes ``partition``: the ``dropped`` records (polled, never handed to the
        application) and every record below ``end`` not polled yet count as finished. Records handed out stay
        pending, so the commit moves past them only once they finish: a crash runs them again, never skips them."""
        with self._lock:
            part = self._parts.get(partition)
            if part is None:
                return
            for off in dropped:
                if off not in part.done:
                    part.done.add(off)
                    self._unfinished -= 1
            if part.next is None or end > part.next:
                part.next = end
            self.changed.notify_all()

    # --- commits -----------------------------------------------------------------------------
    def watermark(self, partition: int) -> int | None:
        with self._lock:
            part = self._parts.get(partition)
            return part.watermark() if part is not None else None

    def next_offset(self, partition: int) -> int | None:
        """The offset after the last one handed out for ``partition`` (None: nothing seen)."""
        with self._lock:
            part = self._parts.get(partition)
            return part.next if part is not None else None

    def to_commit(self, partitions: Iterable[int] | None = None) -> dict[int, int]:
        """``{partition: offset}`` whose contiguous watermark moved past the last commit."""
        out: dict[int, int] = {}
        with self._lock:
            for p, part in self._parts.items():
                if partitions is not None and p not in partitions:
                    continue
                w = part.watermark()
                if w is not None and (part.committed is None or w > part.committed):
                    out[p] = w
        return out

    def committed(self, offsets: dict[int, int]) -> None:
        with self._lock:
            for p, off in offsets.items():
                part = self._parts.get(p)
                if part is not None and (part.committed is None or off > part.committed):
                    part.committed = off

    @property
    def unfinished(self) -> int:
        """Records handed out (buffered or running) and not finished, over every partition."""
        return self._unfinished

    def wait_until(self, partition_targets: dict[int, int], timeout: float,
                   stop: Callable[[], bool] | None = None) -> bool:
        """Wait until each partition's watermark reached its target (its first record we will not run); False
        after ``timeout``, or as soon as ``stop()`` is true (checked at each :meth:`notify` or change)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                if all((self._parts[p].watermark() or 0) >= t for p, t in partition_targets.items()
                       if p in self._parts):
                    return True
                left = deadline - time.monotonic()
                if left <= 0 or (stop is not None and stop()):
                    return False
                self.changed.wait(left)

    def is_pending(self, partition: int, offset: int, epoch: int) -> bool:
        """True while the record was handed out under ``epoch`` of an assigned partition and is not finished."""
        with self._lock:
            part = self._parts.get(partition)
            if self.closed or part is None or part.epoch != epoch or offset in part.done:
                return False
            w = part.watermark()  # finished offsets below the lowest unfinished one are popped from ``done``
            return w is not None and offset >= w

    def wait_changed(self, timeout: float) -> None:
        """Wait up to ``timeout`` for a change (an offset finished, a revoke) or a :meth:`notify`."""
        with self._lock:
            self.changed.wait(timeout)

    def notify(self) -> None:
        """Wake the threads in :meth:`wait_until` / :meth:`wait_changed` (they check their condition again)."""
        with self._lock:
            self.changed.notify_all()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self.changed.notify_all()
