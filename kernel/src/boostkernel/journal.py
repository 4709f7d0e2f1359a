"""Which deliveries a consumer is *running* (not merely holding), in a file that survives ``kill -9``.

A worker that dies is charged a crash only for the message(s) whose function was running; messages it
had only prefetched go back to the queue uncharged, so one poison message does not drag its bystanders
into the dead-letter queue. The kernel calls :meth:`~boostkernel.broker.Broker.started` just before it
runs a function; brokers that count crashes record it here with one copy into a small memory-mapped
per-consumer file (well under a microsecond, and one more when it is settled: no system call, no broker
round trip, no fsync). What is written to a shared mapping lives in the kernel's page cache, so it is
visible to the other processes of the host even after the writer was SIGKILLed.

The reaper of the dead consumer's messages reads the file (:func:`read_journal`): keys listed there were
running and are charged; the others were not. When the file is missing (a consumer on another host, a
consumer that never ran anything through the kernel) the reaper cannot tell and charges every held
message, as a conservative fallback that still stops crash loops.

The file holds one line per event: ``key`` when a delivery starts, ``-key`` when it is settled (so an
ack still waiting in a batch does not make a finished message look running), then NUL padding up to its
mapped size (``rotate_bytes``, 64 KiB). When it is full it is rewritten with only the keys still running,
so it stays small.

A live consumer holds an advisory lock (``flock``) on its journal; the kernel drops it when the process
dies, however it dies. :func:`dead_journals` lists only the journals nobody holds, for brokers where a
message can come back while its first consumer still runs it (a Kafka rebalance): such a message is not
charged a crash. :func:`discharge` marks a dead consumer's key as charged (it is charged once), and
:func:`charge` / :func:`charges` / :func:`forget_charges` keep a message's crash count in a small file
of the same directory, for brokers that cannot carry the count in the message itself;
:class:`CrashCharges` does the lookup and the charge for a broker that sees its redeliveries one by one.
"""

from __future__ import annotations

import mmap
import os
import re
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: every other journal counts as dead (no lock to test)
    fcntl = None  # type: ignore[assignment]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def consumer_id() -> str:
    """A consumer's unique name: ``host:pid:random`` (the host and pid say where a stuck message lives)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def host_journal_dir(name: str) -> str:
    """The directory where the consumers of one queue on this host keep their journals (``name``: the
    broker and the queue, e.g. ``"nats-orders"``). Under the system's temporary directory, which every
    process of the host shares."""
    return os.path.join(tempfile.gettempdir(), "boostkernel-running", _UNSAFE.sub("_", name))


def journal_path(directory: str | Path, owner: str) -> Path:
    """The journal file of consumer ``owner`` in ``directory``."""
    return Path(directory) / (_UNSAFE.sub("_", owner) + ".running")


def read_journal(directory: str | Path, owner: str) -> set[str] | None:
    """Keys that consumer ``owner`` recorded as started; ``None`` when it has no journal here."""
    try:
        data = journal_path(directory, owner).read_bytes()
    except OSError:
        return None
    return _parse_journal(data)


def _parse_journal(data: bytes) -> set[str]:
    running: set[str] = set()
    # NULs: the unwritten part of a mapped journal, followed by lines a reaper appended (discharge)
    for line in data.replace(b"\0", b"").decode(errors="replace").split("\n"):
        if line.startswith("-"):
            running.discard(line[1:])
        elif line:
            running.add(line)
    return running


def running_journals(directory: str | Path, exclude: str | None = None) -> dict[str, set[str]]:
    """``{owner file name: keys it lists as running}`` for every journal in ``directory`` that lists any,
    whether its consumer lives or not; ``exclude`` is an owner to skip (the caller itself). For brokers that
    redeliver a message only once the connection that held it closed: the journal that lists it names the
    consumer that lost it."""
    out: dict[str, set[str]] = {}
    for name in _journal_names(directory, exclude):
        try:
            data = (Path(directory) / name).read_bytes()
        except OSError:
            continue
        ran = _parse_journal(data)
        if ran:
            out[name] = ran
    return out


def remove_journal(directory: str | Path, owner: str) -> None:
    try:
        journal_path(directory, owner).unlink()
    except OSError:
        pass


def _lock(fd: int) -> None:
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pass


def _owner_alive(path: Path) -> bool:
    """Whether a live process holds the journal's lock (the path still names the locked file)."""
    if fcntl is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True  # locked by its (live) writer
        try:
            return os.fstat(fd).st_ino != os.stat(path).st_ino  # rotated while we looked: its writer lives
        except OSError:
            return False
    finally:
        os.close(fd)


def _journal_names(directory: str | Path, exclude: str | None) -> list[str]:
    """The journal files in ``directory`` but ``exclude``'s (an owner); none if it cannot be listed."""
    skip = journal_path(directory, exclude).name if exclude else None
    try:
        return [n for n in os.listdir(directory) if n.endswith(".running") and n != skip]
    except OSError:
        return []


def dead_journals(directory: str | Path, exclude: str | None = None) -> dict[str, set[str]]:
    """``{owner file name: keys it was running}`` for the journals in ``directory`` whose consumer is gone
    (no process holds their lock) and that still list running keys; ``exclude`` is an owner to skip."""
    out: dict[str, set[str]] = {}
    for name in _journal_names(directory, exclude):
        path = Path(directory) / name
        if _owner_alive(path):
            continue
        ran = read_journal(directory, name.removesuffix(".running"))
        if ran:
            out[name] = ran
    return out


def discharge(directory: str | Path, name: str, key: str) -> None:
    """Mark ``key`` as settled in the dead journal ``name`` (a file name from :func:`dead_journals`):
    its crash was charged once and must not be charged again."""
    try:
        with open(Path(directory) / name, "a") as f:
            f.write(f"-{key}\n")
    except OSError:
        pass


def crash_loop_reason(crashes: int, owner: str | None = None) -> str:
    """The dead-letter reason of a message whose workers died ``crashes`` times while running it;
    ``owner``, when known, is the last one (its journal file name or its consumer id)."""
    reason = f"crash-loop: its worker died {crashes} time(s) while running it"
    return f"{reason} (last: {owner.removesuffix('.running')})" if owner else reason


class CrashCharges:
    """The crash accounting of one consumer that looks its redeliveries up one at a time: the journals of
    ``directory`` are read again at most every ``every`` seconds (a burst of redeliveries reads them once).

    By default only the journals of dead consumers count (:func:`dead_journals`). ``live_too=True`` reads
    every journal (:func:`running_journals`), for servers that redeliver a message only once the connection
    that held it closed (RabbitMQ, STOMP): the consumer listing it lost it even if its process still lives.
    """

    def __init__(self, directory: str | Path, owner: str, every: float = 0.02, live_too: bool = False) -> None:
        self.directory, self.owner, self.every = directory, owner, every
        self._read = running_journals if live_too else dead_journals
        self._dead: dict[str, set[str]] = {}
        self._at = -every

    def _ran(self, key: str) -> str | None:
        return next((name for name, ran in self._dead.items() if key in ran), None)

    def refresh(self) -> None:
        """Read the journals now (for a broker that gets its redeliveries in batches: once per batch)."""
        self._at = time.monotonic()
        self._dead = self._read(self.directory, exclude=self.owner)

    def running_owner(self, key: str) -> str | None:
        """The journal (another consumer of this host) that lists ``key`` as running, if any."""
        owner = self._ran(key)
        now = time.monotonic()
        if owner is None and now - self._at >= self.every:
            self._at = now
            self._dead = self._read(self.directory, exclude=self.owner)
            owner = self._ran(key)
        return owner

    def discharge(self, owner: str, key: str) -> None:
        """``key`` was charged to ``owner``'s death: its journal no longer lists it, so it is charged once."""
        self._dead.get(owner, set()).discard(key)
        discharge(self.directory, owner, key)

    def forget(self, key: str) -> None:
        """Message ``key`` was settled or dead-lettered: its crash count is no longer needed."""
        forget_charges(self.directory, key)

    def sweep(self, journals_after: float = 3600.0, charges_after: float = 86400.0) -> None:
        """Delete the journals of consumers gone long ago and crash counts recorded long ago (their
        messages were settled or dead-lettered since). For a consumer's start."""
        sweep_journals(self.directory, journals_after)
        sweep_charges(self.directory, charges_after)

    def redelivered(self, key: str, max_crashes: int) -> tuple[int, str | None]:
        """``(crashes, reason)`` for a redelivered message ``key``: if a dead consumer of this host was
        running it, one crash is charged (once: its journal entry is discharged), and when that makes
        ``max_crashes`` the dead-letter ``reason`` is given (else ``None``); ``crashes`` is the count so far."""
        owner = self.running_owner(key)
        if owner is None:
            return charges(self.directory, key), None
        self.discharge(owner, key)
        n = charge(self.directory, key)
        return n, (crash_loop_reason(n, owner) if n >= max_crashes else None)


def _charge_path(directory: str | Path, key: str) -> Path:
    return Path(directory) / "charged" / _UNSAFE.sub("_", key)


def charges(directory: str | Path, key: str) -> int:
    """Crashes charged so far to message ``key`` (see :func:`charge`)."""
    try:
        return int(_charge_path(directory, key).read_text())
    except (OSError, ValueError):
        return 0


def charge(directory: str | Path, key: str) -> int:
    """Count one more crash of message ``key`` (a consumer died while running it); return the total."""
    n = charges(directory, key) + 1
    path = _charge_path(directory, key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_text(str(n))
        os.replace(tmp, path)
    except OSError:
        pass
    return n


def forget_charges(directory: str | Path, key: str) -> None:
    """The message was settled (or dead-lettered): its crash count is no longer needed."""
    try:
        _charge_path(directory, key).unlink()
    except OSError:
        pass


def sweep_charges(directory: str | Path, older_than: float) -> int:
    """Delete crash counts not updated for ``older_than`` seconds."""
    return sweep_journals(Path(directory) / "charged", older_than, suffix="")


def sweep_journals(directory: str | Path, older_than: float, suffix: str = ".running") -> int:
    """Delete journals not touched for ``older_than`` seconds (their consumers died holding nothing)."""
    n = 0
    cutoff = time.time() - older_than
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    for e in entries:
        try:
            if e.name.endswith(suffix) and e.is_file() and e.stat().st_mtime < cutoff:
                os.unlink(e.path)
                n += 1
        except OSError:
            pass
    return n


class RunningJournal:
    """The journal of one consumer. ``started``/``finished`` may be called from any thread.

    The file is memory-mapped (``MAP_SHARED``): a line is a copy into the page cache, so it survives a
    ``kill -9`` and other processes read it, as with ``write(2)``, but no system call is made and the GIL is
    never released while the journal's lock is held. (With ``write(2)`` under the lock, 16 worker threads
    queued on it: the writer released the GIL for the call and then waited for it with the lock held.)
    The mapped file has a fixed size, padded with NUL bytes that readers skip; when it is full it is
    rewritten with the keys still running."""

    def __init__(self, directory: str | Path, owner: str, rotate_bytes: int = 65536) -> None:
        self.directory = Path(directory)
        self.path = journal_path(directory, owner)
        self.rotate_bytes = max(64, rotate_bytes)
        self._lock = threading.Lock()
        self._running: dict[str, None] = {}
        self._fd = -1
        self._mm: mmap.mmap | None = None
        self._off = 0

    def open(self) -> None:
        """Create the (empty) journal: from now on, a missing key means "never started"."""
        with self._lock:
            if self._fd == -1:
                try:
                    self.directory.mkdir(parents=True, exist_ok=True)
                    self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
                    _lock(self._fd)
                    self._mm, self._off = _mapped(self._fd, self.rotate_bytes), 0
                except (OSError, ValueError):
                    self._give_up()

    def _append(self, line: bytes) -> None:
        """Copy ``line`` into the mapped file (called under the lock); rotate first when it is full."""
        mm = self._mm
        assert mm is not None
        end = self._off + len(line)
        if end > len(mm):
            mm = self._rotate(len(line))
            end = self._off + len(line)
        mm[self._off:end] = line
        self._off = end

    def started(self, key: str) -> None:
        line = (key + "\n").encode()
        with self._lock:
            self._running[key] = None
            if self._fd < 0:
                return
            try:
                self._append(line)
            except (OSError, ValueError):  # disk full, directory gone: reapers fall back to charging every held message
                self._give_up()

    def _give_up(self) -> None:
        if self._mm is not None:
            self._mm.close()
            self._mm = None
        if self._fd >= 0:
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
                self._append(line)
            except (OSError, ValueError):
                self._give_up()

    def _rotate(self, room: int) -> mmap.mmap:
        """Rewrite the file with the keys still running and ``room`` bytes free at least, atomically
        (rename of a locked file); called under the lock."""
        data = "".join(k + "\n" for k in self._running).encode()
        size = self.rotate_bytes
        while size < 2 * (len(data) + room):
            size *= 2
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _lock(fd)
            mm = _mapped(fd, size)
        except (OSError, ValueError):
            os.close(fd)
            raise
        mm[:len(data)] = data
        os.replace(tmp, self.path)
        assert self._mm is not None
        self._mm.close()
        os.close(self._fd)
        self._fd, self._mm, self._off = fd, mm, len(data)
        return mm

    def close(self) -> None:
        """Graceful stop: everything was returned or settled, so the journal is removed."""
        with self._lock:
            if self._mm is not None:
                self._mm.close()
                self._mm = None
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            self._running.clear()
        try:
            self.path.unlink()
        except OSError:
            pass


def _mapped(fd: int, size: int) -> mmap.mmap:
    """``fd``'s file grown to ``size`` bytes (NULs) and mapped shared, read-write."""
    os.ftruncate(fd, size)
    return mmap.mmap(fd, size)
