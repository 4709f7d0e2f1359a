"""A broker that keeps each message as a file: ready/ → inflight/<consumer>/ (atomic rename) → deleted on ack.

Crash recovery: every consumer owns a directory ``inflight/<owner>/`` and touches ``.alive`` in it from a
heartbeat thread. Any consumer's fetch reaps, on a timer, the directories whose ``.alive`` is older than
``dead_after``: their messages go back to ``ready/``. A message the dead consumer was *running* (it has
a ``.running`` marker, written by :meth:`DirQueueBroker.started`) is charged a crash; after
``max_deliveries`` crashes it goes to ``dead/`` with reason ``crash-loop``. Prefetched messages go back
uncharged.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from boostkernel import Broker, BrokerCapabilities, DeadLetterRecord, Delivery, Outgoing


def _name(prio: str, ns: str, count: int, crashes: int, msg_id: str) -> str:
    return f"{prio}-{ns}-{count}-{crashes}_{msg_id}"


def _parse(name: str) -> tuple[str, str, int, int, str]:
    """``<9-priority>-<time ns>-<deliveries>-<crashes>_<message id>`` → its five parts."""
    head, _, msg_id = name.partition("_")
    prio, ns, count, crashes = head.split("-")
    return prio, ns, int(count), int(crashes), msg_id


def _is_message(name: str) -> bool:
    return not name.startswith(".") and not name.endswith((".running", ".reason"))


class DirQueueBroker(Broker):
    """Messages as files. File names sort by priority then publish order, so a listing is the queue."""

    name = "dirqueue"
    capabilities = BrokerCapabilities(ack=True, requeue=True, priority=True, delay=True, durable=True,
                                      count=True, purge=True, dead_letter=True, cross_process=True,
                                      recovery_seconds=12.0)

    def __init__(self, queue: str, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(queue, url, params, **options)
        root = Path(url[len("dirqueue://"):]) if url else Path(tempfile.gettempdir()) / "boostkernel-dirqueue"
        self.dirs = {d: root / queue / d for d in ("ready", "delayed", "inflight", "dead")}
        for d in self.dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        o = self.options
        self.dead_after = float(o.get("dead_after", 10.0))
        """Seconds without a heartbeat after which a consumer is dead and its messages are returned."""
        self.heartbeat_interval = float(o.get("heartbeat_interval", self.dead_after / 4))
        self.reap_interval = float(o.get("reap_interval", 1.0))
        self.max_crashes = self.crash_limit()
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.mine_dir = self.dirs["inflight"] / self.owner
        self._mine: set[str] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._hb: threading.Thread | None = None
        self._next_reap = 0.0

    # --- publishing -------------------------------------------------------------------------------
    def publish(self, message: Outgoing) -> None:
        # 9 - priority first so that higher priority sorts earlier; then time for FIFO order.
        name = _name(str(9 - max(0, min(9, message.priority))), f"{time.time_ns():020d}", 0, 0, message.id)
        where = self.dirs["ready"]
        if message.eta is not None and message.eta > time.time():
            where, name = self.dirs["delayed"], f"{int(message.eta * 1e9):020d}~{name}"
        tmp = where / f".{name}.tmp"
        tmp.write_bytes(message.body)
        os.replace(tmp, where / name)  # appears atomically, complete

    # --- consuming --------------------------------------------------------------------------------
    def _start(self) -> None:
        self.mine_dir.mkdir(parents=True, exist_ok=True)
        (self.mine_dir / ".alive").touch()
        self._hb = threading.Thread(target=self._beat, daemon=True, name=f"dirqueue-heartbeat-{self.queue}")
        self._hb.start()

    def _beat(self) -> None:
        while not self._closed.wait(self.heartbeat_interval):
            try:
                os.utime(self.mine_dir / ".alive")
            except OSError:
                pass

    def _release_due(self) -> None:
        now = time.time_ns()
        for name in sorted(os.listdir(self.dirs["delayed"])):
            if name.startswith(".") or int(name.split("~", 1)[0]) > now:
                continue
            try:
                os.rename(self.dirs["delayed"] / name, self.dirs["ready"] / name.split("~", 1)[1])
            except FileNotFoundError:
                pass

    def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        if self._hb is None:
            self._start()
        deadline = time.monotonic() + timeout
        while True:
            if time.monotonic() >= self._next_reap:
                self.reap()
                self._next_reap = time.monotonic() + self.reap_interval
            self._release_due()
            out: list[Delivery] = []
            for name in sorted(n for n in os.listdir(self.dirs["ready"]) if not n.startswith(".")):
                prio, ns, count, crashes, msg_id = _parse(name)
                taken = _name(prio, ns, count + 1, crashes, msg_id)
                try:
                    os.rename(self.dirs["ready"] / name, self.mine_dir / taken)
                except FileNotFoundError:
                    continue  # another consumer took it
                body = (self.mine_dir / taken).read_bytes()
                with self._lock:
                    self._mine.add(taken)
                out.append(Delivery(msg_id, body, taken, count + 1))
                if len(out) >= max_messages:
                    break
            if out or time.monotonic() >= deadline or self._closed.is_set():
                return out
            time.sleep(0.02)

    def started(self, delivery: Delivery) -> None:
        (self.mine_dir / f"{delivery.tag}.running").touch()

    def _forget(self, delivery: Delivery) -> bool:
        with self._lock:
            if delivery.tag not in self._mine:
                return False
            self._mine.discard(delivery.tag)
        (self.mine_dir / f"{delivery.tag}.running").unlink(missing_ok=True)
        return True

    def ack(self, delivery: Delivery) -> None:
        if self._forget(delivery):
            (self.mine_dir / delivery.tag).unlink(missing_ok=True)

    def nack(self, delivery: Delivery, requeue: bool = True, delay: float = 0.0) -> None:
        if not self._forget(delivery):
            return
        src = self.mine_dir / delivery.tag
        if not requeue:
            src.unlink(missing_ok=True)
        elif delay > 0:
            os.replace(src, self.dirs["delayed"] / f"{int((time.time() + delay) * 1e9):020d}~{delivery.tag}")
        else:
            os.replace(src, self.dirs["ready"] / delivery.tag)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        if self._forget(delivery):
            self._to_dead(self.mine_dir / delivery.tag, reason)

    def _to_dead(self, src: Path, reason: str) -> None:
        (self.dirs["dead"] / f"{src.name}.reason").write_text(reason)
        os.replace(src, self.dirs["dead"] / src.name)

    # --- crash recovery ------------------------------------------------------------------------------
    def reap(self) -> int:
        """Return the messages of consumers whose heartbeat stopped; dead-letter crash loops."""
        n = 0
        limit = time.time() - self.dead_after
        for owner in os.listdir(self.dirs["inflight"]):
            d = self.dirs["inflight"] / owner
            if owner == self.owner:
                continue
            try:
                beat = (d / ".alive").stat().st_mtime
            except FileNotFoundError:  # a consumer that is just starting, or a directory being removed
                try:
                    beat = d.stat().st_mtime
                except FileNotFoundError:
                    continue
            if beat > limit:
                continue
            for name in filter(_is_message, os.listdir(d)):
                prio, ns, count, crashes, msg_id = _parse(name)
                if (d / f"{name}.running").exists():
                    crashes += 1
                try:
                    if crashes >= self.max_crashes:
                        self._to_dead(d / name, f"crash-loop: the worker died {crashes} times while running it")
                    else:
                        os.rename(d / name, self.dirs["ready"] / _name(prio, ns, count, crashes, msg_id))
                    n += 1
                except FileNotFoundError:
                    continue  # another consumer reaped it
            shutil.rmtree(d, ignore_errors=True)
        return n

    # --- dead letters ----------------------------------------------------------------------------------
    def dead_letters(self, limit: int = 100) -> list[DeadLetterRecord]:
        out = []
        for name in sorted(n for n in os.listdir(self.dirs["dead"]) if _is_message(n))[:limit]:
            path = self.dirs["dead"] / name
            reason = (self.dirs["dead"] / f"{name}.reason").read_text()
            out.append(DeadLetterRecord(_parse(name)[4], path.read_bytes(), reason, path.stat().st_mtime, name))
        return out

    def replay_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        n = 0
        for rec in self.dead_letters(limit=1_000_000):
            if ids is None or rec.id in ids:
                prio, ns, _, _, msg_id = _parse(rec.tag)
                os.replace(self.dirs["dead"] / rec.tag, self.dirs["ready"] / _name(prio, ns, 0, 0, msg_id))
                (self.dirs["dead"] / f"{rec.tag}.reason").unlink(missing_ok=True)
                n += 1
        return n

    def purge_dead_letters(self) -> int:
        n = 0
        for p in self.dirs["dead"].iterdir():
            p.unlink()
            n += not p.name.endswith(".reason")
        return n

    # --- inspection and lifecycle ------------------------------------------------------------------------
    def count(self) -> int:
        return sum(1 for d in ("ready", "delayed") for n in os.listdir(self.dirs[d]) if not n.startswith("."))

    def purge(self) -> int:
        n = 0
        for d in ("ready", "delayed"):
            for name in os.listdir(self.dirs[d]):
                try:
                    (self.dirs[d] / name).unlink()
                    n += 1
                except FileNotFoundError:
                    pass
        return n

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        with self._lock:
            mine, self._mine = self._mine, set()
        for name in mine:  # a graceful stop returns what this consumer held, uncharged
            try:
                os.replace(self.mine_dir / name, self.dirs["ready"] / name)
            except FileNotFoundError:
                pass
        if self._hb is not None:
            self._hb.join(5)
            shutil.rmtree(self.mine_dir, ignore_errors=True)
