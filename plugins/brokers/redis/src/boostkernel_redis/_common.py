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
from urllib.parse import unquote

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
_reserved: dict[int, int] = {}  # id(pool) -> connections reserved by the brokers and stores using it

# Connections a pool keeps beyond what its users reserved: the maintenance thread, ack flushers,
# publishers, result waiters of the publishing side, the user's own calls.
POOL_HEADROOM = 50
MIN_POOL = 100  # redis-py's default: a pool is never smaller than that


def pool_need(params: Any) -> int:
    """Connections a booster with these parameters may use at once: one per worker (each task can store its
    result, publish, wait on another task's result) plus its fetch loop."""
    if params is None:
        return 0
    return int(getattr(params, "workers", 0) or 0) + 1


CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
SCHEMES = ("redis", "rediss", "unix", *CLUSTER_SCHEMES, *SENTINEL_SCHEMES)


def _hosts(url: str, default_port: int) -> tuple[str | None, str | None, list[tuple[str, int]], str]:
    """``scheme://[user[:password]@]h1[:p1][,h2[:p2]…]/path`` -> (user, password, [(host, port)…], path)."""
    rest = url.split("://", 1)[1]
    netloc, _, path = rest.partition("/")
    path = path.split("?", 1)[0]
    creds, _, hostlist = netloc.rpartition("@")
    user, _, password = creds.partition(":")
    hosts: list[tuple[str, int]] = []
    for h in hostlist.split(","):
        h = h.strip()
        if not h:
            continue
        host, sep, port = h.rpartition(":") if not h.endswith("]") else (h, "", "")
        if not sep:
            host, port = h, ""
        try:
            hosts.append((host.strip("[]") or "127.0.0.1", int(port) if port else default_port))
        except ValueError:
            raise ConfigError(f"Redis URL {mask_url(url)!r}: bad port in {h!r}") from None
    if not hosts:
        raise ConfigError(f"Redis URL {mask_url(url)!r} names no host")
    return unquote(user) or None, unquote(password) or None, hosts, path


def _grow(r: Any, size: int) -> None:
    """Raise the connection limit of every pool behind ``r`` (one per node on a cluster) to ``size``."""
    if is_cluster(r):
        r.nodes_manager.connection_kwargs["max_connections"] = size  # nodes discovered later
        for node in r.get_nodes():
            if node.redis_connection is not None:
                pool = node.redis_connection.connection_pool
                pool.max_connections = max(pool.max_connections, size)
    else:
        r.connection_pool.max_connections = max(r.connection_pool.max_connections, size)


def _make(url: str, scheme: str, o: dict[str, Any], key: tuple[Any, ...]) -> Any:
    socket_timeout, connect_timeout, health, retries, fixed = key[1:6]
    retry = Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.05), retries)
    common: dict[str, Any] = {
        "socket_timeout": socket_timeout, "socket_connect_timeout": connect_timeout, "socket_keepalive": True,
        "health_check_interval": int(health), "retry": retry, "client_name": f"boostkernel-{os.getpid()}",
        "max_connections": fixed or MIN_POOL,
    }
    if scheme in CLUSTER_SCHEMES:
        from redis.cluster import ClusterNode, RedisCluster

        user, password, hosts, path = _hosts(url, 6379)
        if path.strip("/") not in ("", "0"):
            raise ConfigError(f"Redis URL {mask_url(url)!r}: a Redis Cluster has only database 0")
        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in hosts], username=user, password=password,
                            ssl=scheme.startswith("rediss"), **common)
    if scheme in SENTINEL_SCHEMES:
        from redis.sentinel import Sentinel

        user, password, hosts, path = _hosts(url, 26379)
        parts = [x for x in path.split("/") if x]
        if not parts or len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
            raise ConfigError(f"Redis URL {mask_url(url)!r}: a Sentinel URL is "
                              "redis+sentinel://[:password@]host:port[,host:port…]/SERVICE_NAME[/DB]")
        sentinel_kwargs = {"socket_timeout": socket_timeout, "socket_connect_timeout": connect_timeout}
        if o.get("sentinel_password"):
            sentinel_kwargs["password"] = str(o["sentinel_password"])
        sentinel = Sentinel(hosts, sentinel_kwargs=sentinel_kwargs, username=user, password=password,
                            db=int(parts[1]) if len(parts) == 2 else 0, ssl=scheme.startswith("rediss"), **common)
        return sentinel.master_for(parts[0])
    pool = redis.ConnectionPool.from_url(url, **common)
    return redis.Redis(connection_pool=pool)


def is_cluster(r: Any) -> bool:
    return not hasattr(r, "connection_pool")


def client(url: str | None, options: dict[str, Any] | None = None, need: int = 0) -> Any:
    """A Redis client on a shared pool for ``url``, one per (URL, options) per process.

    ``redis://``, ``rediss://`` (TLS), ``unix://``; ``redis+cluster://host:port[,host:port…]`` (a
    ``RedisCluster``: every key of a queue carries the queue's hash tag, so each script and blocking move
    touches one slot); ``redis+sentinel://[:password@]host:port[,host:port…]/SERVICE[/DB]`` (the current
    master of SERVICE, found through the sentinels; ``sentinel_password`` option for the sentinels).

    The pool's ``max_connections`` (per node on a cluster) grows with what its users reserve (``need``: one
    connection per worker, see :func:`pool_need`) plus a headroom of ``POOL_HEADROOM``, never below
    redis-py's default of 100, so a booster with ``workers=200`` never sees "Too many connections".
    ``max_connections`` in the options fixes the size instead."""
    url = url or DEFAULT_URL
    o = options or {}
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise ConfigError(f"Redis URL {mask_url(url)!r} must start with redis://, rediss://, unix://, "
                          "redis+cluster:// or redis+sentinel://")
    fixed = o.get("max_connections")
    if fixed is not None and (not isinstance(fixed, int) or isinstance(fixed, bool) or fixed < 1):
        raise ConfigError(f"broker option max_connections={fixed!r}: must be an integer >= 1")
    key = (url, float(o.get("socket_timeout", 10.0)), float(o.get("socket_connect_timeout", 5.0)),
           float(o.get("health_check_interval", 15)), int(o.get("command_retries", 2)), fixed)
    with _pools_lock:
        base = _pools.get(key)
        if base is None:
            base = _pools[key] = _make(url, scheme, o, key)
            _warn_no_auth(url)
        if fixed is None and need > 0:
            reserved = _reserved[id(base)] = _reserved.get(id(base), 0) + need
            _grow(base, max(MIN_POOL, reserved + POOL_HEADROOM))
    if is_cluster(base):
        return base  # a RedisCluster is the per-node pools: share it
    return redis.Redis(connection_pool=base.connection_pool)


def own_connection(r: Any) -> Any:
    """A connection of ``r``'s pool's kind that the pool does not count (a thread's private publisher socket:
    it closes when the thread's state is collected and never uses up the pool's ``max_connections``).
    ``None`` on a cluster (the key decides the node) and through Sentinel (redis-py's sentinel connection finds
    the master only when its pool connects it): use the client's own commands there."""
    if is_cluster(r) or type(r.connection_pool) is not redis.ConnectionPool:
        return None
    pool = r.connection_pool
    return pool.connection_class(**pool.connection_kwargs)


def _warn_no_auth(url: str) -> None:
    if url in _warned_urls or url.startswith("unix:"):
        return
    _warned_urls.add(url)
    try:
        _, password, hosts, _ = _hosts(url, 6379)
    except ConfigError:
        return
    if password is None and any(h not in ("127.0.0.1", "localhost", "::1") for h, _ in hosts):
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
    log: logging.Logger
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
