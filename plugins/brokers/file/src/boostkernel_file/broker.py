"""The file broker: a directory is the queue; every message is one file, moved between folders by rename.

Layout of ``<root>/<queue>/``::

    ready/       waiting messages; the file name sorts by priority, then publish time
    delayed/     messages with a future eta (``<eta ns>@<name>``); moved to ready/ when due
    inflight/<consumer>/   messages a consumer holds; the claim is one rename(2) out of ready/
    reaping/<consumer>@<reaper>/   a dead consumer's folder while a live one returns its messages
    consumers/<consumer>   heartbeat file, its mtime touched every ``heartbeat_interval``
    running/<consumer>.running   the running journal (boostkernel.journal): what it had *started*
    dead/        dead letters: ``<time ns>-<id>`` (the body) and ``<time ns>-<id>.reason`` (JSON)
    tmp/         bodies being written; renamed into ready/ when complete

* **Claim** is ``rename(ready/NAME, inflight/OWNER/NAME')``: rename(2) is atomic, so of several
  consumers (threads, processes, hosts on one file server) exactly one succeeds; the others get
  ``ENOENT`` and try the next name. There is no moment in which a claimed message is recorded nowhere.
* A message file name is ``<priority key>-<publish ns>-<id>-<deliveries>-<crashes>``: the delivery and
  crash counts travel with the file, so the claim's rename also counts the delivery.
* **Heartbeats**: a thread per consumer touches ``consumers/<owner>`` every ``heartbeat_interval``.
  Every consumer's thread also reaps, every ``reap_interval``: a consumer whose heartbeat file did not
  change for ``dead_after`` seconds (measured on the reaper's own clock, so clock skew between hosts does
  not matter) or is older than ``dead_after + clock_skew`` by the wall clock, or is missing, is dead.
  The reaper renames its whole ``inflight/<owner>`` folder to ``reaping/`` (the rename is the lock: one
  reaper wins) and returns each file to ready/. Files the dead consumer was *running* (its journal says
  so) are charged a crash; after ``max_deliveries`` crashes they go to dead/ with a ``crash-loop`` reason.
  A reaper that dies while reaping leaves ``reaping/<owner>@<reaper>``: the next reaper adopts it.
* **Ack** unlinks the file; nack renames it back (to delayed/ with a delay); close() returns everything
  the consumer still holds, uncharged.
* **Wake-up**: a local publish wakes local fetchers at once; ``watchdog`` (inotify and friends, imported
  lazily) wakes them on changes made by other processes; polling every ``poll_interval`` always runs as
  well, because inotify does not see changes made by other hosts on a network file system.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from boostkernel.broker import Broker, BrokerCapabilities, DeadLetterRecord, Delivery, Outgoing, poll_claims
from boostkernel.errors import ConfigError
from boostkernel.journal import RunningJournal, read_journal, remove_journal, sweep_journals
from boostkernel.params import default_data_dir

_SAFE_QUEUE = re.compile(r"^[A-Za-z0-9_.:~-]{1,200}$")
_UNSAFE_OWNER = re.compile(r"[^A-Za-z0-9_.:-]")
_counter = itertools.count()
# Local publishes wake local fetchers at once; the watchdog observer wakes them on foreign changes.
_wakeups: dict[str, threading.Condition] = {}
_watchers: dict[str, list[Any]] = {}  # ready dir -> [observer, refcount]
_watchers_lock = threading.Lock()
_generation: dict[str, int] = {}  # ready dir -> local publishes (a fetcher rescans after one: priority order)


def _name(pk: int, ns: int, qid: str, deliveries: int, crashes: int) -> str:
    return f"{pk:04d}-{ns:019d}-{qid}-{deliveries}-{crashes}"


def _parse(name: str) -> tuple[int, int, str, int, int] | None:
    """``<priority key>-<ns>-<quoted id>-<deliveries>-<crashes>`` -> its parts; None if foreign."""
    try:
        pk, ns, rest = name.split("-", 2)
        qid, d, c = rest.rsplit("-", 2)
        if len(pk) != 4 or not qid:
            return None
        return int(pk), int(ns), qid, int(d), int(c)
    except ValueError:
        return None


def _priority_key(priority: int) -> int:
    """Higher priority sorts first: key 5000 - priority, clamped to 4 digits."""
    return 5000 - max(-4999, min(4999, int(priority)))


def path_from_url(url: str | None, params: Any, directory: str | None) -> Path:
    """``file:///abs/dir``, ``file://relative/dir`` or the ``directory`` option; default: the data directory."""
    if directory:
        return Path(directory)
    if url:
        if not url.startswith("file://"):
            raise ConfigError(f"not a file broker URL: {url!r} (expected file:///path/to/queues)")
        return Path(url[len("file://"):] or ".")
    base = params.resolved_data_dir() if params is not None else default_data_dir()
    return Path(base) / "file-queues"


class FileBroker(Broker):
    """A directory per queue; at-least-once across threads, processes and hosts sharing the directory."""

    name = "file"
    # and the defaults: ack, requeue, count, purge, dead letters, cross-process, recovery within 15 s
    capabilities = BrokerCapabilities(priority=True, delay=True, durable=True)

    def __init__(self, queue: str, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(queue, url, params, **options)
        if not _SAFE_QUEUE.match(queue):
            raise ConfigError(f"file broker: queue name {queue!r} is used as a folder name; use letters, digits "
                              f"and _ . : ~ - only (at most 200)")
        o = self.options
        self.dead_after = float(o.get("dead_after", 10.0))
        """Seconds without a heartbeat after which a consumer is dead and its messages go back."""
        self.heartbeat_interval = float(o.get("heartbeat_interval", min(2.0, self.dead_after / 4)))
        self.reap_interval = float(o.get("reap_interval", min(2.0, self.dead_after / 4)))
        skew = o.get("clock_skew", 1.0)
        self.clock_skew: float | None = None if skew is None else float(skew)
        """Tolerance of the wall-clock rule (heartbeat older than dead_after + clock_skew); None: off."""
        self.poll_interval = float(o.get("poll_interval", 0.05))
        self.scan_interval = float(o.get("scan_interval", 0.5))
        self.fsync = bool(o.get("fsync", False))
        self.watch = o.get("watch", "auto")
        self.root = path_from_url(self.url, params, o.get("directory"))
        self.dir = self.root / queue
        self.ready, self.delayed = self.dir / "ready", self.dir / "delayed"
        self.inflight, self.reaping = self.dir / "inflight", self.dir / "reaping"
        self.consumers, self.dead, self.tmp = self.dir / "consumers", self.dir / "dead", self.dir / "tmp"
        self.journal_dir = self.dir / "running"
        for d in (self.ready, self.delayed, self.inflight, self.reaping, self.consumers, self.dead, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        host = _UNSAFE_OWNER.sub("_", socket.gethostname())
        self.owner = f"{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.mine = self.inflight / self.owner
        # string prefixes for the per-message path (pathlib joins cost more than the syscalls)
        self._ready_s, self._mine_s, self._tmp_s = f"{self.ready}/", f"{self.mine}/", f"{self.tmp}/"
        self._delayed_s = f"{self.delayed}/"
        self.hb_file = self.consumers / self.owner
        self.journal = RunningJournal(self.journal_dir, self.owner)
        self._wake = _wakeups.setdefault(str(self.ready), threading.Condition())
        self._cache: deque[str] = deque()
        self._cache_at = 0.0
        self._gen = 0
        self._next_promote = 0.0
        self._seen: dict[str, tuple[int, float]] = {}  # owner -> (heartbeat mtime, first seen unchanged)
        self._last_reap = time.monotonic()
        self._next_sweep = 0.0
        self._watching = False
        self._started = False
        self._start_lock = threading.Lock()
        self._hb_thread: threading.Thread | None = None
        self._closed = threading.Event()

    # --- publishing -----------------------------------------------------------------------------
    def _write(self, body: bytes, dest: str) -> None:
        tmp = f"{self._tmp_s}{self.owner}-{next(_counter)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(body)
            while view:
                view = view[os.write(fd, view):]
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, dest)
        if self.fsync:
            _fsync_dir(os.path.dirname(dest))

    def publish(self, message: Outgoing) -> None:
        now = time.time_ns()
        name = _name(_priority_key(message.priority), now, quote(message.id, safe=""), 0, 0)
        if message.eta is not None and message.eta * 1e9 > now:
            self._write(message.body, f"{self._delayed_s}{int(message.eta * 1e9):019d}@{name}")
        else:
            self._write(message.body, self._ready_s + name)
            _generation[self._ready_s] = _generation.get(self._ready_s, 0) + 1
            self._notify()

    def _notify(self) -> None:
        with self._wake:
            self._wake.notify_all()

    # --- consuming ------------------------------------------------------------------------------
    def _start(self) -> None:
        with self._start_lock:
            if self._started:
                return
            self._started = True
            self.hb_file.touch()
            self.mine.mkdir(exist_ok=True)
            self.journal.open()
            self._start_watch()
            self._hb_thread = threading.Thread(target=self._heartbeat_loop, daemon=True,
                                               name=f"boostkernel-file-heartbeat-{self.queue}")
            self._hb_thread.start()

    def _start_watch(self) -> None:
        if self.watch is False or self.watch == "off":
            return
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:
            if self.watch is True:
                raise ConfigError("file broker: watch=True needs watchdog (pip install watchdog)") from None
            return
        key = str(self.ready)
        cond = self._wake
        with _watchers_lock:
            entry = _watchers.get(key)
            if entry is None:
                class _Wake(FileSystemEventHandler):
                    def on_any_event(self, event: Any) -> None:
                        with cond:
                            cond.notify_all()

                observer = Observer()
                observer.daemon = True
                try:
                    observer.schedule(_Wake(), key, recursive=False)
                    observer.start()
                except Exception as exc:  # noqa: BLE001 - e.g. inotify limits: polling still works
                    self.log.warning("file broker: no change notification for %s (%s); polling", key, exc)
                    return
                entry = _watchers[key] = [observer, 0]
            entry[1] += 1
            self._watching = True

    def _stop_watch(self) -> None:
        if not self._watching:
            return
        self._watching = False
        with _watchers_lock:
            entry = _watchers.get(str(self.ready))
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] > 0:
                return
            del _watchers[str(self.ready)]
        with contextlib.suppress(Exception):
            entry[0].unschedule_all()  # before stop(): watchdog logs an error for events of a stopping emitter
            entry[0].stop()
            entry[0].join(2)

    def _promote_due(self) -> None:
        """Move due files of delayed/ to ready/ (any consumer may; a lost race is ENOENT)."""
        now_ns = time.time_ns()
        next_due = time.monotonic() + self.poll_interval * 4
        try:
            names = os.listdir(self.delayed)
        except FileNotFoundError:
            self.delayed.mkdir(parents=True, exist_ok=True)
            return
        moved = False
        for n in names:
            eta, sep, name = n.partition("@")
            if not sep or not eta.isdigit():
                if not n.startswith("."):
                    eta, name = "0", n  # a foreign file: due now
                else:
                    continue
            if int(eta) <= now_ns:
                with contextlib.suppress(FileNotFoundError):
                    os.rename(self.delayed / n, self.ready / name)
                    moved = True
            else:
                next_due = min(next_due, time.monotonic() + (int(eta) - now_ns) / 1e9)
        self._next_promote = next_due
        if moved:
            self._cache.clear()

    def _claim(self, n: int) -> list[Delivery]:
        if time.monotonic() >= self._next_promote:
            self._promote_due()
        gen = _generation.get(self._ready_s, 0)
        if not self._cache or gen != self._gen or time.monotonic() - self._cache_at > self.scan_interval:
            self._gen = gen
            try:
                names = sorted(e.name for e in os.scandir(self.ready) if not e.name.startswith("."))
            except FileNotFoundError:
                self.ready.mkdir(parents=True, exist_ok=True)
                names = []
            self._cache = deque(names)
            self._cache_at = time.monotonic()
        out: list[Delivery] = []
        while self._cache and len(out) < n:
            name = self._cache.popleft()
            parsed = _parse(name)
            if parsed is None:  # dropped in by a foreign producer: its file name is its id
                pk, ns, qid, d, c = 5000, time.time_ns(), quote(name, safe=""), 0, 0
            else:
                pk, ns, qid, d, c = parsed
            new = _name(pk, ns, qid, d + 1, c)
            dst = self._mine_s + new
            if not self._move(self._ready_s + name, dst):
                continue
            try:
                with open(dst, "rb") as f:
                    body = f.read()
            except FileNotFoundError:  # taken by a reaper who judged us dead: it is back in ready/
                continue
            except IsADirectoryError:
                self._move(dst, f"{self.dead}/{time.time_ns():019d}-{qid}")
                continue
            out.append(Delivery(unquote(qid), body, new, d + 1, crashes=c))
        if len(out) > 1:
            out.sort(key=lambda x: x.tag)
        return out

    def _move(self, src: str, dst: str) -> bool:
        """rename(2); False when ``src`` is gone (another consumer took it)."""
        try:
            os.rename(src, dst)
            return True
        except FileNotFoundError:
            if os.path.exists(dst):  # an NFS retransmission of a rename that had succeeded
                return True
            if dst.startswith(self._mine_s) and not self.mine.is_dir():  # a reaper took our folder: make a new one
                self.hb_file.touch()
                self.mine.mkdir(parents=True, exist_ok=True)
                try:
                    os.rename(src, dst)
                    return True
                except FileNotFoundError:
                    return False
            return False

    def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        if not self._started:
            self._start()
        return poll_claims(lambda: self._claim(max_messages), timeout, self._wake, self._closed,
                           longest=self.poll_interval * (10 if self._watching else 1),
                           wait_cap=lambda: max(0.001, self._next_promote - time.monotonic()),
                           woken=self._look_again)

    def _look_again(self) -> None:
        self._cache_at = 0.0  # woken or timed out: look at the folder again

    def started(self, delivery: Delivery) -> None:
        """Record that this delivery's function runs now (one write(2) to the running journal)."""
        self.journal.started(str(delivery.tag))

    def ack(self, delivery: Delivery) -> None:
        with contextlib.suppress(FileNotFoundError):  # already returned by close() or a reaper
            os.unlink(self._mine_s + delivery.tag)
        self.journal.finished(str(delivery.tag))

    def nack(self, delivery: Delivery, requeue: bool = True, delay: float = 0.0) -> None:
        tag = str(delivery.tag)
        src = self._mine_s + tag
        try:
            if not requeue:
                os.unlink(src)
            else:
                parsed = _parse(tag)
                assert parsed is not None
                pk, _, qid, d, c = parsed
                name = _name(pk, time.time_ns(), qid, d, c)
                if delay > 0:
                    os.rename(src, f"{self._delayed_s}{int((time.time() + delay) * 1e9):019d}@{name}")
                    self._next_promote = 0.0
                else:
                    os.rename(src, self._ready_s + name)
                    _generation[self._ready_s] = _generation.get(self._ready_s, 0) + 1
                    self._notify()
        except FileNotFoundError:
            pass
        self.journal.finished(tag)

    def _bury(self, src: str | Path, qid: str, reason: str) -> bool:
        """Move ``src`` into dead/ with ``reason`` (sidecar first: a crash in between leaves only a sidecar)."""
        dn = f"{time.time_ns():019d}-{qid}"
        side = self.dead / f"{dn}.reason"
        tmp = self.tmp / f"{self.owner}-{next(_counter)}.reason"
        tmp.write_text(json.dumps({"reason": reason, "failed_at": time.time()}))
        os.rename(tmp, side)
        try:
            os.rename(src, self.dead / dn)
            return True
        except FileNotFoundError:
            side.unlink(missing_ok=True)
            return False

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        tag = str(delivery.tag)
        self._bury(self._mine_s + tag, quote(delivery.id, safe=""), reason)
        self.journal.finished(tag)

    # --- heartbeat and the reaper -------------------------------------------------------------------
    def _heartbeat_loop(self) -> None:
        next_reap = 0.0
        tick = min(self.heartbeat_interval, self.reap_interval)
        while not self._closed.wait(tick):
            try:
                try:
                    os.utime(self.hb_file)
                except FileNotFoundError:  # removed by a reaper that judged us dead: we are back
                    self.hb_file.touch()
                self.journal.touch()
                if time.monotonic() >= next_reap:
                    self.reap()
                    next_reap = time.monotonic() + self.reap_interval
            except OSError as exc:
                if self._closed.is_set():
                    return
                self.log.warning("file broker heartbeat failed: %s", exc)

    def _is_dead(self, owner: str) -> bool:
        try:
            mtime = os.stat(self.consumers / owner).st_mtime_ns
        except FileNotFoundError:
            return True
        now = time.monotonic()
        seen = self._seen.get(owner)
        if seen is None or seen[0] != mtime:
            self._seen[owner] = (mtime, now)
            seen = (mtime, now)
        if now - seen[1] >= self.dead_after:
            return True
        return self.clock_skew is not None and time.time() - mtime / 1e9 > self.dead_after + self.clock_skew

    def reap(self) -> int:
        """Return the messages of dead consumers to ready/ (crashes charged per the journal); returns how many."""
        n = 0
        now = time.monotonic()
        if now - self._last_reap > max(3 * self.reap_interval, self.dead_after / 2):
            # this reaper was itself stalled (a loaded machine, a suspended process): what it saw before says
            # nothing about the others now, so "unchanged since" starts again from here
            self._seen = {o: (m, now) for o, (m, _) in self._seen.items()}
        self._last_reap = now
        for e in _scandir(self.inflight):
            owner = e.name
            if owner != self.owner and self._is_dead(owner):
                target = self.reaping / f"{owner}@{self.owner}"
                try:
                    os.rename(e.path, target)
                except OSError:  # another reaper won
                    continue
                n += self._return_all(target, owner)
        for e in _scandir(self.reaping):
            owner, _, reaper = e.name.rpartition("@")
            if reaper == self.owner or self._is_dead(reaper):  # its reaper died half-way: adopt
                target = self.reaping / f"{owner}@{self.owner}"
                if reaper != self.owner:
                    try:
                        os.rename(e.path, target)
                    except OSError:
                        continue
                n += self._return_all(target, owner)
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + 60
            self._sweep()
        if n:
            self.log.warning("recovered %d message(s) from dead workers of queue %r", n, self.queue)
            self._notify()
        return n

    def _return_all(self, folder: Path, owner: str) -> int:
        ran = read_journal(self.journal_dir, owner)
        n = 0
        for e in _scandir(folder):
            name = e.name
            parsed = _parse(name)
            if parsed is None:
                with contextlib.suppress(FileNotFoundError):
                    os.rename(e.path, self.ready / name)
                continue
            pk, ns, qid, d, c = parsed
            if ran is not None and name not in ran:
                dst = self.ready / name  # prefetched only: back uncharged, in its old place
            elif c + 1 >= self.max_crashes:
                reason = (f"crash-loop: the worker died {c + 1} time(s) while running it "
                          f"(last: worker {owner})")
                if self._bury(Path(e.path), qid, reason):
                    self.log.error("message %s dead-lettered: %s", unquote(qid), reason)
                continue
            else:
                dst = self.ready / _name(pk, ns, qid, d, c + 1)
            with contextlib.suppress(FileNotFoundError):
                os.rename(e.path, dst)
                n += 1
        with contextlib.suppress(OSError):
            folder.rmdir()
        remove_journal(self.journal_dir, owner)
        with contextlib.suppress(FileNotFoundError):
            (self.consumers / owner).unlink()
        self._seen.pop(owner, None)
        return n

    def _sweep(self) -> None:
        """Old leftovers: journals of consumers that died holding nothing, bodies of producers that died
        while writing, heartbeat files of consumers that died holding nothing."""
        sweep_journals(self.journal_dir, max(60.0, 10 * self.dead_after))
        cutoff = time.time() - max(3600.0, 10 * self.dead_after)
        for e in _scandir(self.tmp):
            with contextlib.suppress(OSError):
                if e.stat().st_mtime < cutoff:
                    os.unlink(e.path)
        held = {e.name for e in _scandir(self.inflight)}
        for e in _scandir(self.consumers):
            if e.name not in held and e.name != self.owner:
                with contextlib.suppress(OSError):
                    if e.stat().st_mtime < time.time() - max(60.0, 10 * self.dead_after):
                        os.unlink(e.path)

    # --- dead letters ------------------------------------------------------------------------------
    def _dead_names(self) -> list[str]:
        return sorted(e.name for e in _scandir(self.dead) if not e.name.endswith(".reason")
                      and not e.name.startswith("."))

    def dead_letters(self, limit: int = 100) -> list[DeadLetterRecord]:
        out = []
        for dn in self._dead_names()[:limit]:
            try:
                body = (self.dead / dn).read_bytes()
            except OSError:
                continue
            try:
                meta = json.loads((self.dead / f"{dn}.reason").read_text())
            except (OSError, ValueError):
                meta = {"reason": "unknown (no reason file)", "failed_at": 0.0}
            _, _, qid = dn.partition("-")
            out.append(DeadLetterRecord(unquote(qid), body, str(meta.get("reason")),
                                        float(meta.get("failed_at", 0.0)), dn))
        return out

    def replay_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        wanted = None if ids is None else set(ids)
        n = 0
        for dn in self._dead_names():
            _, _, qid = dn.partition("-")
            if wanted is not None and unquote(qid) not in wanted:
                continue
            try:
                os.rename(self.dead / dn, self.ready / _name(_priority_key(0), time.time_ns(), qid, 0, 0))
            except FileNotFoundError:
                continue
            (self.dead / f"{dn}.reason").unlink(missing_ok=True)
            n += 1
        self._notify()
        return n

    def purge_dead_letters(self) -> int:
        n = 0
        for dn in self._dead_names():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.dead / dn)
                n += 1
            (self.dead / f"{dn}.reason").unlink(missing_ok=True)
        return n

    # --- inspection and lifecycle -------------------------------------------------------------------
    def count(self) -> int:
        return sum(1 for d in (self.ready, self.delayed) for e in _scandir(d) if not e.name.startswith("."))

    def in_flight(self) -> int:
        return sum(1 for top in (self.inflight, self.reaping) for sub in _scandir(top) for _ in _scandir(sub.path))

    def purge(self) -> int:
        n = 0
        for d in (self.ready, self.delayed):
            for e in _scandir(d):
                if not e.name.startswith("."):
                    with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                        os.unlink(e.path)
                        n += 1
        self._cache.clear()
        return n

    def close(self) -> None:
        if not self.stop_background(self._closed, self._hb_thread, 5):
            return
        self._stop_watch()
        if self._started:
            returned = 0
            for e in _scandir(self.mine):  # prefetched and unsettled: back, uncharged
                with contextlib.suppress(FileNotFoundError):
                    os.rename(e.path, self.ready / e.name)
                    returned += 1
            with contextlib.suppress(OSError):
                self.mine.rmdir()
            self.hb_file.unlink(missing_ok=True)
            self.journal.close()
            if returned:
                self._notify()

    def describe(self) -> dict[str, Any]:
        return {"broker": self.name, "queue": self.queue, "directory": str(self.dir)}


def _scandir(path: str | Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            return list(it)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
