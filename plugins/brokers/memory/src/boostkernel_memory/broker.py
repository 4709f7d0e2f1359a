"""The memory broker: queues shared by every booster of one process.

Unacked deliveries are held in an in-flight table; ``nack`` and ``close`` put them back. Nothing
survives the process, so "at-least-once" here means across graceful stops, not crashes.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from boostkernel.broker import Broker, BrokerCapabilities, DeadLetterRecord, Delivery, Outgoing

# (id, body, priority, deliveries)
_Item = tuple[str, bytes, int, int]


def _own(body: bytes) -> bytes:
    """An exact-size copy of ``body``. A JSON encoder's output can sit in a much larger allocation (orjson's
    ``dumps`` keeps its ~4 KB write buffer: a 139-byte body held 4 KB alive), and a queued message lives
    as long as the queue holds it: the copy costs ~0.2 µs and brings a queued no-op message from ~4.4 KB
    to ~0.4 KB (``benchmarks/bench_memory.py``)."""
    return memoryview(body).tobytes()


class _Queue:
    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.ready: deque[_Item] = deque()
        self.prio: list[tuple[int, int, _Item]] = []  # (-priority, seq, item)
        self.delayed: list[tuple[float, int, _Item]] = []  # (eta, seq, item)
        self.inflight: dict[int, _Item] = {}
        self.dead: list[DeadLetterRecord] = []
        self.seq = itertools.count()

    def put(self, item: _Item, eta: float | None) -> None:
        if eta is not None and eta > time.time():
            heapq.heappush(self.delayed, (eta, next(self.seq), item))
        elif item[2]:
            heapq.heappush(self.prio, (-item[2], next(self.seq), item))
        else:
            self.ready.append(item)

    def promote_due(self) -> float | None:
        """Move due delayed items to ready; return the next eta still pending."""
        now = time.time()
        d = self.delayed
        while d and d[0][0] <= now:
            item = heapq.heappop(d)[2]
            if item[2]:
                heapq.heappush(self.prio, (-item[2], next(self.seq), item))
            else:
                self.ready.append(item)
        return d[0][0] if d else None


_QUEUES: dict[str, _Queue] = {}
_TAGS = itertools.count(1)


def _queue(name: str) -> _Queue:
    q = _QUEUES.get(name)
    return q if q is not None else _QUEUES.setdefault(name, _Queue())  # setdefault: racing callers get one


class MemoryBroker(Broker):
    name = "memory"
    default_store = "memory"  # results of an in-process queue stay in the process
    capabilities = BrokerCapabilities(
        ack=True, requeue=True, priority=True, delay=True, durable=False, count=True, purge=True,
        batch_publish=True, dead_letter=True, cross_process=False, fetch_any_thread=True,
    )

    def __init__(self, queue: str, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(queue, url, params, **options)
        self._q = _queue(queue)
        self._mine: set[int] = set()

    def publish(self, message: Outgoing) -> None:
        q = self._q
        with q.cond:
            q.put((message.id, _own(message.body), message.priority, 0), message.eta)
            q.cond.notify()

    def publish_many(self, messages: Sequence[Outgoing]) -> None:
        q = self._q
        with q.cond:
            for m in messages:
                q.put((m.id, _own(m.body), m.priority, 0), m.eta)
            q.cond.notify_all()

    def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        q = self._q
        deadline = time.monotonic() + timeout
        with q.cond:
            while True:
                next_eta = q.promote_due() if q.delayed else None
                if q.ready or q.prio:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                if next_eta is not None:
                    left = min(left, max(0.0, next_eta - time.time()))
                q.cond.wait(left)
            out: list[Delivery] = []
            ready, prio, inflight, mine = q.ready, q.prio, q.inflight, self._mine
            while len(out) < max_messages:
                if prio:
                    item = heapq.heappop(prio)[2]
                elif ready:
                    item = ready.popleft()
                else:
                    break
                tag = next(_TAGS)
                item = (item[0], item[1], item[2], item[3] + 1)
                inflight[tag] = item
                mine.add(tag)
                out.append(Delivery(item[0], item[1], tag, item[3]))
            return out

    def ack(self, delivery: Delivery) -> None:
        self._q.inflight.pop(delivery.tag, None)  # dict ops are atomic under the GIL
        self._mine.discard(delivery.tag)

    def nack(self, delivery: Delivery, requeue: bool = True, delay: float = 0.0) -> None:
        q = self._q
        with q.cond:
            item = q.inflight.pop(delivery.tag, None)
            self._mine.discard(delivery.tag)
            if item is not None and requeue:
                q.put(item, time.time() + delay if delay > 0 else None)
                q.cond.notify()

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        q = self._q
        with q.cond:
            q.inflight.pop(delivery.tag, None)
            self._mine.discard(delivery.tag)
            q.dead.append(DeadLetterRecord(delivery.id, delivery.body, reason, time.time()))

    def dead_letters(self, limit: int = 100) -> list[DeadLetterRecord]:
        with self._q.cond:
            return list(self._q.dead[:limit])

    def replay_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        q = self._q
        with q.cond:
            chosen = [r for r in q.dead if ids is None or r.id in ids]
            q.dead = [r for r in q.dead if not (ids is None or r.id in ids)]
            for r in chosen:
                q.put((r.id, r.body, 0, 0), None)
            q.cond.notify_all()
        return len(chosen)

    def purge_dead_letters(self) -> int:
        with self._q.cond:
            n, self._q.dead = len(self._q.dead), []
        return n

    def count(self) -> int:
        q = self._q
        with q.cond:
            return len(q.ready) + len(q.prio) + len(q.delayed)

    def purge(self) -> int:
        q = self._q
        with q.cond:
            n = len(q.ready) + len(q.prio) + len(q.delayed)
            q.ready.clear()
            q.prio.clear()
            q.delayed.clear()
        return n

    def close(self) -> None:
        q = self._q
        with q.cond:
            for tag in list(self._mine):
                item = q.inflight.pop(tag, None)
                if item is not None:
                    q.put(item, None)
            self._mine.clear()
            q.cond.notify_all()
