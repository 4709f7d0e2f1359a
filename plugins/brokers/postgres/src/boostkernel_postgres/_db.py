"""Connections to PostgreSQL for the broker and the store: timeouts, keepalives, reconnect with backoff.

Imported only when a broker or store is used (never by ``plugin.py``), so listing plugins does not import
psycopg.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from boostkernel.errors import BrokerUnavailable, ConfigError
from boostkernel.logs import mask, mask_url
from boostkernel.retrying import retry_unavailable

try:
    import psycopg
except ImportError as exc:  # pragma: no cover - exercised only without the dependency
    raise ImportError(
        f"the PostgreSQL plugin of boostkernel needs psycopg 3 ({exc}). Install it with: "
        'pip install "boostkernel[postgres]"  (or: pip install "psycopg[binary]")'
    ) from exc

log = logging.getLogger("boostkernel.postgres")
T = TypeVar("T")

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_SCHEMA = "boostkernel"
#: What a broken or unreachable server raises (a lost connection, a server restart, a refused connect).
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (psycopg.OperationalError, psycopg.InterfaceError, OSError)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_schemas_ready: set[tuple[str, str, str]] = set()
_schemas_lock = threading.Lock()


def check_url(url: str | None) -> str:
    url = url or DEFAULT_URL
    if not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"PostgreSQL URL {mask_url(url)!r} must start with postgresql:// or postgres://")
    return url


def check_schema(schema: Any) -> str:
    s = str(schema)
    if not _IDENT.match(s):
        raise ConfigError(f"PostgreSQL schema name {s!r} must be a plain identifier (letters, digits, _; "
                          f"at most 63 characters, not starting with a digit)")
    return s


def channel(schema: str, queue: str) -> str:
    """The LISTEN/NOTIFY channel of a queue (an identifier of at most 63 bytes, whatever the queue name)."""
    return "bk_" + hashlib.sha1(f"{schema}.{queue}".encode()).hexdigest()[:24]


def connect(url: str, options: dict[str, Any], app: str) -> psycopg.Connection[Any]:
    """An autocommit connection with connect/socket timeouts and TCP keepalives (a cut link is noticed)."""
    kwargs: dict[str, Any] = {
        "autocommit": True,
        "connect_timeout": max(1, int(float(options.get("connect_timeout", 5)))),
        "application_name": app[:63],
        "keepalives": 1,
        "keepalives_idle": int(options.get("keepalives_idle", 10)),
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "tcp_user_timeout": int(float(options.get("socket_timeout", 30)) * 1000),
    }
    # Statements are prepared after a few runs (psycopg); a generic plan of the claim (LIMIT and queue
    # unknown) may sort the whole table on every fetch. Custom plans keep it an index scan of a few rows.
    server_options = "-c plan_cache_mode=force_custom_plan"
    if options.get("statement_timeout") is not None:
        server_options += f" -c statement_timeout={int(float(options['statement_timeout']) * 1000)}"
    kwargs["options"] = server_options
    try:
        return psycopg.connect(url, **kwargs)
    except CONNECTION_ERRORS as exc:
        raise BrokerUnavailable(f"cannot connect to PostgreSQL at {mask_url(url)}: {mask(str(exc)).strip()}") from exc


class Link:
    """One connection, used under a lock, re-opened after any connection error.

    ``run(fn)`` calls ``fn(conn)``; if the connection breaks it is dropped and ``BrokerUnavailable`` is
    raised: the caller decides whether to retry (``run_retrying``) or to give up for now (the consume loop
    retries fetches with its own capped backoff). ``setup`` runs on every new connection (``LISTEN``).
    """

    def __init__(self, url: str, options: dict[str, Any], app: str,
                 setup: Callable[[psycopg.Connection[Any]], None] | None = None) -> None:
        self.url, self.options, self.app, self.setup = url, options, app, setup
        self.lock = threading.RLock()
        self._conn: psycopg.Connection[Any] | None = None
        self.reconnects = 0
        self._had_conn = False

    def conn(self) -> psycopg.Connection[Any]:
        c = self._conn
        if c is None or c.closed:
            c = connect(self.url, self.options, self.app)
            try:
                if self.setup is not None:
                    self.setup(c)
            except BaseException:
                c.close()
                raise
            if self._had_conn:
                self.reconnects += 1
                log.info("reconnected to PostgreSQL at %s", mask_url(self.url))
            self._conn, self._had_conn = c, True
        return c

    def run(self, fn: Callable[[psycopg.Connection[Any]], T], retry_stale: bool = True) -> T:
        """``fn(conn)``. With ``retry_stale``, a connection that broke while idle (a server restart, a cut
        link: noticed only now) is replaced and ``fn`` runs once more; pass False where a second run
        needs the caller's care (a claim whose reply was lost)."""
        with self.lock:
            for attempt in (1, 2):
                stale = self._conn is not None and not self._conn.closed
                try:
                    return fn(self.conn())
                except BrokerUnavailable:
                    raise
                except CONNECTION_ERRORS as exc:
                    self.drop()
                    if attempt == 1 and stale and retry_stale:
                        continue
                    raise BrokerUnavailable(f"PostgreSQL at {mask_url(self.url)}: {mask(str(exc)).strip()}") from exc
            raise AssertionError("unreachable")  # pragma: no cover

    def run_retrying(self, fn: Callable[[psycopg.Connection[Any]], T], timeout: float, what: str) -> T:
        """``run`` with capped exponential backoff and jitter until ``timeout`` seconds have passed."""
        return retry_unavailable(lambda: self.run(fn), timeout, what, log)

    def drop(self) -> None:
        with self.lock:
            c, self._conn = self._conn, None
        if c is not None:
            try:
                c.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass

    def backend_pid(self) -> int | None:
        c = self._conn
        return None if c is None or c.closed else int(c.info.backend_pid)

    def close(self) -> None:
        self.drop()


def ensure_schema(link: Link, schema: str, name: str, ddl: str) -> None:
    """Create the schema and tables once per process (under an advisory lock: several processes may race)."""
    key = (link.url, schema, name)
    with _schemas_lock:
        if key in _schemas_ready:
            return

    def tx(c: psycopg.Connection[Any]) -> None:
        with c.transaction():
            lock_id = int.from_bytes(hashlib.sha1(f"boostkernel:{schema}".encode()).digest()[:8], "big", signed=True)
            c.execute("SELECT pg_advisory_xact_lock(%s)", (lock_id,))
            c.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            c.execute(ddl.replace("{s}", f'"{schema}"'))

    link.run_retrying(tx, float(link.options.get("connect_retry_timeout", 30.0)), "creating the boostkernel tables")
    with _schemas_lock:
        _schemas_ready.add(key)


NOW = "extract(epoch from clock_timestamp())"
"""The database's clock in unix seconds: leases and delays use one clock for every host."""
