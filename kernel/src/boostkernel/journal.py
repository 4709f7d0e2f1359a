"""Which deliveries a consumer is *running* (not merely holding), in a file that survives ``kill -9``.

A worker that dies is charged a crash only for the message(s) whose function was running; messages it
had only prefetched go back to the queue uncharged, so one poison message does not drag its bystanders
into the dead-letter queue. The kernel calls :meth:`~boostkernel.broker.Broker.started` just before it
runs a function; brokers that count crashes record it here with one ``write(2)`` to a small per-consumer
file (about 1-2 µs, and one more when it is settled: no broker round trip, no fsync). Data written with ``write(2)`` lives in the kernel's
page cache, so it is visible to the other processes of the host even after the writer was SIGKILLed.

The reaper of the dead consumer's messages reads the file (:func:`read_journal`): keys listed there were
running and are charged; the others were not. When the file is missing (a consumer on another host, a
consumer that never ran anything through the kernel) the reaper cannot tell and charges every held
message, as a conservative fallback that still stops crash loops.

The file holds one line per event: ``key`` when a delivery starts, ``-key`` when it is settled (so an
ack still waiting in a batch does not make a finished message look running). It is rewritten with only
the keys still running when it grows past ``rotate_bytes``, so it stays small.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def journal_path(directory: str | Path, owner: str) -> Path:
    """The journal file of consumer ``owner`` in ``directory``."""
    return Path(directory) / (_UNSAFE.sub("_", owner) + ".running")


def read_journal(directory: str | Path, owner: str) -> set[str] | None:
    """Keys that consumer ``owner`` recorded as started; ``None`` when it has no journal here."""
    try:
        data = journal_path(directory, owner).read_bytes()
    except OSError:
        return None
    running: set[str] = set()
    for line in data.decode(errors="replace").split("\n"):
        if line.startswith("-"):
            running.discard(line[1:])
        elif line:
            running.add(line)
    return running


def remove_journal(directory: str | Path, owner: str) -> None:
    try:
        journal_path(directory, owner).unlink()
    except OSError:
        pass


def sweep_journals(directory: str | Path, older_than: float) -> int:
    """Delete journals not touched for ``older_than`` seconds (their consumers died holding nothing)."""
    import time

    n = 0
    cutoff = time.time() - older_than
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    for e in entries:
        try:
            if e.name.endswith(".running") and e.stat().st_mtime < cutoff:
                os.unlink(e.path)
                n += 1
        except OSError:
            pass
    return n


class RunningJournal:
    """The journal of one consumer. ``started``/``finished`` may be called from any thread."""

    def __init__(self, directory: str | Path, owner: str, rotate_bytes: int = 65536) -> None:
        self.directory = Path(directory)
        self.path = journal_path(directory, owner)
        self.rotate_bytes = rotate_bytes
        self._lock = threading.Lock()
        self._running: dict[str, None] = {}
        self._fd = -1
        self._size = 0

    def open(self) -> None:
        """Create the (empty) journal: from now on, a missing key means "never started"."""
        with self._lock:
            if self._fd == -1:
                try:
                    self.directory.mkdir(parents=True, exist_ok=True)
                    self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
                except OSError:
                    self._fd = -2
                self._size = 0

    def started(self, key: str) -> None:
        line = (key + "\n").encode()
        with self._lock:
            self._running[key] = None
            if self._fd < 0:
                return
            try:
                os.write(self._fd, line)
                self._size += len(line)
                if self._size > self.rotate_bytes:
                    self._rotate()
            except OSError:  # disk full, directory gone: reapers fall back to charging every held message
                self._give_up()

    def _give_up(self) -> None:
        try:
            os.close(self._fd)
        except OSError:
            pass
        self._fd = -2  # never reopened
        try:
            self.path.unlink()
        except OSError:
            pass

    def touch(self) -> None:
        """Called with every heartbeat: a journal untouched for long belongs to a dead consumer."""
        if self._fd >= 0:
            try:
                os.utime(self._fd)
            except OSError:
                pass

    def finished(self, key: str) -> None:
        """The delivery was settled (or handed back): a death from now on is not its doing."""
        line = ("-" + key + "\n").encode()
        with self._lock:
            if self._running.pop(key, 0) is not None or self._fd < 0:
                return  # never started here: nothing to take back
            try:
                os.write(self._fd, line)
                self._size += len(line)
            except OSError:
                self._give_up()

    def _rotate(self) -> None:
        """Rewrite the file with the keys still running (atomic rename; called under the lock)."""
        data = "".join(k + "\n" for k in self._running).encode()
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        os.write(fd, data)
        os.replace(tmp, self.path)
        os.close(self._fd)
        self._fd, self._size = fd, len(data)

    def close(self) -> None:
        """Graceful stop: everything was returned or settled, so the journal is removed."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            self._running.clear()
        try:
            self.path.unlink()
        except OSError:
            pass
