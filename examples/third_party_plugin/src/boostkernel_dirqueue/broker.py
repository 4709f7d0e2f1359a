"""A broker that keeps each message as a file: ready/ → inflight/ (atomic rename) → deleted on ack."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from boostkernel import Broker, BrokerCapabilities, DeadLetterRecord, Delivery, Outgoing


def _parse(name: str) -> tuple[str, int]:
    """``<9-priority>-<time ns>-<deliveries>_<message id>`` → (message id, deliveries so far)."""
    count, _, msg_id = name.split("-", 2)[2].partition("_")
    return msg_id, int(count)


class DirQueueBroker(Broker):
    """Messages as files. File names sort by priority then publish order, so a listing is the queue."""

    name = "dirqueue"
    capabilities = BrokerCapabilities(ack=True, requeue=True, priority=True, delay=False, durable=True,
                                      count=True, purge=True, dead_letter=True, cross_process=True)

    def __init__(self, queue: str, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(queue, url, params, **options)
        root = Path(url[len("dirqueue://"):]) if url else Path(tempfile.gettempdir()) / "boostkernel-dirqueue"
        self.dirs = {d: root / queue / d for d in ("ready", "inflight", "dead")}
        for d in self.dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        self._mine: set[str] = set()
        self._lock = threading.Lock()

    def publish(self, message: Outgoing) -> None:
        # 9 - priority first so that higher priority sorts earlier; then time for FIFO order.
        name = f"{9 - max(0, min(9, message.priority))}-{time.time_ns():020d}-0_{message.id}"
        tmp = self.dirs["ready"] / f".{name}.tmp"
        tmp.write_bytes(message.body)
        os.replace(tmp, self.dirs["ready"] / name)  # appears atomically, complete

    def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        while True:
            out: list[Delivery] = []
            for name in sorted(n for n in os.listdir(self.dirs["ready"]) if not n.startswith(".")):
                try:
                    os.rename(self.dirs["ready"] / name, self.dirs["inflight"] / name)
                except FileNotFoundError:
                    continue  # another consumer took it
                body = (self.dirs["inflight"] / name).read_bytes()
                with self._lock:
                    self._mine.add(name)
                msg_id, previous = _parse(name)
                out.append(Delivery(msg_id, body, name, previous + 1))
                if len(out) >= max_messages:
                    break
            if out or time.monotonic() >= deadline:
                return out
            time.sleep(0.02)

    def _forget(self, delivery: Delivery) -> bool:
        with self._lock:
            if delivery.tag not in self._mine:
                return False
            self._mine.discard(delivery.tag)
            return True

    def ack(self, delivery: Delivery) -> None:
        if self._forget(delivery):
            (self.dirs["inflight"] / delivery.tag).unlink(missing_ok=True)

    def nack(self, delivery: Delivery, requeue: bool = True, delay: float = 0.0) -> None:
        if not self._forget(delivery):
            return
        src = self.dirs["inflight"] / delivery.tag
        if requeue:  # count the delivery in the name so the next consumer sees it
            prio, ns, _ = delivery.tag.split("-", 2)
            msg_id, count = _parse(delivery.tag)
            os.replace(src, self.dirs["ready"] / f"{prio}-{ns}-{count + 1}_{msg_id}")
        else:
            src.unlink(missing_ok=True)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        if self._forget(delivery):
            (self.dirs["dead"] / f"{delivery.tag}.reason").write_text(reason)
            os.replace(self.dirs["inflight"] / delivery.tag, self.dirs["dead"] / delivery.tag)

    def dead_letters(self, limit: int = 100) -> list[DeadLetterRecord]:
        out = []
        for name in sorted(n for n in os.listdir(self.dirs["dead"]) if not n.endswith(".reason"))[:limit]:
            path = self.dirs["dead"] / name
            reason = (self.dirs["dead"] / f"{name}.reason").read_text()
            out.append(DeadLetterRecord(_parse(name)[0], path.read_bytes(), reason, path.stat().st_mtime, name))
        return out

    def replay_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        n = 0
        for rec in self.dead_letters(limit=1_000_000):
            if ids is None or rec.id in ids:
                os.replace(self.dirs["dead"] / rec.tag, self.dirs["ready"] / rec.tag)
                (self.dirs["dead"] / f"{rec.tag}.reason").unlink(missing_ok=True)
                n += 1
        return n

    def purge_dead_letters(self) -> int:
        n = 0
        for p in self.dirs["dead"].iterdir():
            p.unlink()
            n += not p.name.endswith(".reason")
        return n

    def count(self) -> int:
        return sum(1 for n in os.listdir(self.dirs["ready"]) if not n.startswith("."))

    def purge(self) -> int:
        n = 0
        for name in os.listdir(self.dirs["ready"]):
            try:
                (self.dirs["ready"] / name).unlink()
                n += 1
            except FileNotFoundError:
                pass
        return n

    def close(self) -> None:
        with self._lock:
            mine, self._mine = self._mine, set()
        for name in mine:  # a graceful stop returns what this consumer held
            try:
                os.replace(self.dirs["inflight"] / name, self.dirs["ready"] / name)
            except FileNotFoundError:
                pass
