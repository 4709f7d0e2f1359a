"""Shared pieces of the Redis brokers and store: connections, the maintenance thread, the element format.

Connections
    One ``ConnectionPool`` per (URL, options) per process, with socket and connect timeouts, TCP keepalive,
    health checks and redis-py's own short retry (exponential backoff with jitter) for each command. Long
    outages are ridden out by the callers' loops (consume loop, ack flusher, publisher), which retry with
    capped exponential backoff plus jitter, so nothing that was published or fetched is lost.

Element format (reliable list, delayed set, dead-letter queue)
    ``b"\\x01" + id + b"\\n" + deliveries + b"\\n" + crashes + b"\\n" + body``. The id travels with the body so
    in-flight records are keyed by message id (never by body) and the Lua scripts never parse JSON.
    ``deliveries`` counts previous deliveries, ``crashes`` how often a worker died while holding it.
    A list element that does not start with ``\\x01`` came from a foreign producer (plain JSON): the fetch
    script gives it an id (``x-<n>``) and wraps it.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from boostkernel.errors import ConfigError
from boostkernel.logs import mask_url
from boostkernel.retrying import Backoff

log = logging.getLogger("boostkernel.redis")

DEFAULT_URL = "redis://127.0.0.1:6379/0"
MAX_PRIORITY = 9

try:  # imported lazily by the broker modules, never by plugin.py
    import redis as redis  # re-exported: the broker modules import it from here, lazily
    from redis.backoff import ExponentialWithJitterBackoff
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - exercised only without the dependency
    raise ImportError(
        f"the Redis plugin of boostkernel needs redis-py ({exc}). Install it with: "
        'pip install "boostkernel[redis]"  (or: pip install redis hiredis)'
    ) from exc

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    redis.ConnectionError, redis.TimeoutError, ConnectionError, TimeoutError, OSError,
)

_pools: dict[tuple[Any, ...], Any] = {}
_pools_lock = threading.Lock()
_warned_urls: set[str] = set()


def client(url: str | None, options: dict[str, Any] | None = None) -> redis.Redis:
    """A ``redis.Redis`` on a shared pool for ``url`` (``redis://``, ``rediss://``, ``unix://``; password, db)."""
    url = url or DEFAULT_URL
    o = options or {}
    scheme = urlparse(url).scheme
    if scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"Redis URL {mask_url(url)!r} must start with redis://, rediss:// or unix://")
    socket_timeout = float(o.get("socket_timeout", 10.0))
    key = (url, socket_timeout, float(o.get("socket_connect_timeout", 5.0)), float(o.get("health_check_interval", 15)),
           int(o.get("command_retries", 2)))
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            retry = Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.05), key[4])
            pool = redis.ConnectionPool.from_url(
                url, socket_timeout=socket_timeout, socket_connect_timeout=key[2], socket_keepalive=True,
                health_check_interval=int(key[3]), retry=retry, client_name=f"boostkernel-{os.getpid()}",
            )
            _pools[key] = pool
            _warn_no_auth(url)
    return redis.Redis(connection_pool=pool)


def _warn_no_auth(url: str) -> None:
    p = urlparse(url)
    if p.password or url in _warned_urls or p.scheme == "unix":
        return
    _warned_urls.add(url)
    if p.hostname not in (None, "127.0.0.1", "localhost", "::1"):
        log.warning("Redis at %s has no password in its URL: an unauthenticated Redis that others can reach "
                    "runs their Lua (and so their code). Set requirepass/ACL and use redis://:PASSWORD@host",
                    mask_url(url))


def consumer_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def key_base(queue: str, options: dict[str, Any]) -> str:
    """``bk:{queue}``: the braces are a Redis Cluster hash tag, so all keys of a queue share one slot."""
    prefix = str(options.get("key_prefix", "bk"))
    return f"{prefix}:{{{queue}}}"


def backoff_delays(start: float = 0.1, cap: float = 5.0) -> Backoff:
    """Capped exponential delays with +-20% jitter, starting at ``start`` (call it for the next delay)."""
    return Backoff(start, cap, jitter=(0.8, 1.2))


def element(mid: str, body: bytes, deliveries: int = 0, crashes: int = 0) -> bytes:
    if "\n" in mid:
        raise ConfigError(f"message id {mid!r} must not contain a newline")
    return b"\x01%b\n%d\n%d\n%b" % (mid.encode(), deliveries, crashes, body)


def parse_value(v: bytes) -> tuple[int, str, int, int, bytes]:
    """Parse ``prio + element`` → (priority, id, deliveries, crashes, body)."""
    head, d, c, body = v.split(b"\n", 3)
    return head[0] - 48, head[2:].decode(), int(d), int(c), body


# --- the per-process maintenance thread (heartbeats, reaper, delayed mover) ----------------------


class _Maintenance:
    """One daemon thread per process calls ``maintain()`` of every registered broker every ``tick`` s."""

    def __init__(self) -> None:
        self._members: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self.tick = 0.1

    def add(self, broker: Any) -> None:
        with self._lock:
            self._members.add(broker)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="boostkernel-redis-heartbeat", daemon=True)
                self._thread.start()

    def remove(self, broker: Any) -> None:
        with self._lock:
            self._members.discard(broker)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.tick)
            with self._lock:
                members = list(self._members)
            now = time.monotonic()
            for b in members:
                try:
                    b.maintain(now)
                except Exception as exc:  # noqa: BLE001 - the heartbeat thread must never die
                    log.warning("redis maintenance of queue %r failed: %s: %s", getattr(b, "queue", "?"),
                                type(exc).__name__, exc)


maintenance = _Maintenance()

# --- flushing auto-batched publishes at a clean exit -------------------------------------------------
_batchers: weakref.WeakSet[Any] = weakref.WeakSet()


def register_batcher(b: Any) -> None:
    _batchers.add(b)


@atexit.register
def _flush_all_at_exit() -> None:
    for b in list(_batchers):
        try:
            b.flush(timeout=30.0)
        except Exception as exc:  # noqa: BLE001
            log.error("could not flush auto-batched publishes of queue %r at exit: %s", getattr(b, "queue", "?"), exc)


_RedisClient = redis.Redis


class AckBatching:
    """Batched acks, shared by the list and streams brokers (a mixin).

    ``ack()`` appends to ``_acks`` (guarded by ``_ack_guard``) and sets ``_ack_wake``; a background thread
    (``_ack_loop``) waits ``ack_flush_interval`` for more, then sends them all in one pipeline (``fetch`` may
    piggy-back them as well). On connection errors the acks are put back and retried with backoff, so none is
    lost while the process lives. A broker says how to send a chunk of acks (``_pipe_acks``) and what to do
    once they are sent (``_acks_sent``).
    """

    queue: str
    log: logging.Logger | logging.LoggerAdapter[logging.Logger]
    redis: _RedisClient
    ack_flush_interval: float
    _closed: bool
    _acks: list[str]
    _ack_wake: threading.Event
    _ack_guard: threading.Lock

    def _pipe_acks(self, pipe: Any, ids: list[str]) -> None:
        raise NotImplementedError

    def _acks_sent(self, ids: list[str]) -> None:
        """Called after ``ids`` were acked in Redis. Default: nothing."""

    def _ack_loop(self) -> None:
        nxt = backoff_delays()
        while True:
            self._ack_wake.wait()
            if self._closed:
                return
            self._ack_wake.clear()
            if self.ack_flush_interval:
                time.sleep(self.ack_flush_interval)
            try:
                self.flush_acks()
                nxt = backoff_delays()
            except CONNECTION_ERRORS as exc:
                delay = nxt()
                self.log.warning("acking on %r failed (%s); retrying in %.2fs", self.queue, exc, delay)
                self._ack_wake.set()
                time.sleep(delay)

    def flush_acks(self) -> None:
        """Send every buffered ack now (the caller's thread)."""
        with self._ack_guard:
            acks, self._acks = self._acks, []
        if not acks:
            return
        try:
            pipe = self.redis.pipeline(transaction=False)
            for i in range(0, len(acks), 5000):
                self._pipe_acks(pipe, acks[i:i + 5000])
            pipe.execute()
        except BaseException:
            with self._ack_guard:
                self._acks[:0] = acks
            raise
        self._acks_sent(acks)


class PublishBuffer:
    """Auto-batching of ``publish()``: messages are buffered and a background thread sends them in
    pipelines (one ``RPUSH key e1 … eN`` per key) within ``interval`` seconds. ``flush()`` waits until the
    buffer is empty; it runs at a clean interpreter exit and on ``close()``, so a clean exit drops nothing.
    A kill -9 loses what is still buffered (at most ``interval`` seconds of publishes)."""

    def __init__(self, send: Callable[[list[Any]], None], queue: str, interval: float = 0.002,
                 max_pending: int = 200_000) -> None:
        self.send, self.queue, self.interval, self.max_pending = send, queue, interval, max_pending
        self._items: list[Any] = []
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._inflight = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"boostkernel-redis-publisher-{queue}", daemon=True)
        self._thread.start()
        register_batcher(self)

    def add(self, item: Any) -> None:
        with self._lock:
            while len(self._items) >= self.max_pending:  # back-pressure when Redis is slower than the producer
                self._cond.wait(0.1)
            self._items.append(item)
            first = len(self._items) == 1
        if first:
            self._wake.set()

    def _run(self) -> None:
        nxt = backoff_delays()
        while True:
            self._wake.wait()
            self._wake.clear()
            if self.interval:
                time.sleep(self.interval)
            while True:
                with self._lock:
                    items, self._items = self._items, []
                    self._inflight = len(items)
                if not items:
                    break
                while True:
                    try:
                        self.send(items)
                        nxt = backoff_delays()
                        break
                    except CONNECTION_ERRORS as exc:
                        delay = nxt()
                        log.warning("publishing %d buffered message(s) to %r failed (%s); retrying in %.2fs",
                                    len(items), self.queue, exc, delay)
                        time.sleep(delay)
                with self._lock:
                    self._inflight = 0
                    self._cond.notify_all()

    def pending(self) -> int:
        with self._lock:
            return len(self._items) + self._inflight

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Block until every buffered message was sent (or ``timeout``); True if the buffer is empty."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._wake.set()
        with self._lock:
            while self._items or self._inflight:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._wake.set()
                self._cond.wait(0.05 if left is None else min(0.05, left))
        return True
