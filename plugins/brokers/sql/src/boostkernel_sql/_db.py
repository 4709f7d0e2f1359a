"""Engines, tables and dialect facts for the SQL broker (imported only when the broker is used)."""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Any, ClassVar

from boostkernel.errors import ConfigError

try:
    import sqlalchemy as sa
    from sqlalchemy.dialects import mysql
except ImportError as exc:  # pragma: no cover - exercised only without the dependency
    raise ImportError(f"the sql broker of boostkernel needs SQLAlchemy 2 ({exc}). Install it with: "
                      'pip install "boostkernel[sql]"  plus your database driver (pymysql, psycopg …)') from exc

log = logging.getLogger("boostkernel.sql")
_engines: dict[tuple[Any, ...], sa.Engine] = {}
_lock = threading.Lock()
_PREFIX = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,40}$")

#: The database's clock in unix seconds, per dialect: leases and delays use one clock for every host.
_NOW = {
    "postgresql": "extract(epoch from clock_timestamp())",
    "mysql": "UNIX_TIMESTAMP(NOW(6))",
    "mariadb": "UNIX_TIMESTAMP(NOW(6))",
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
}


def _after_fork() -> None:  # a child process must not share its parent's pooled sockets
    with _lock:
        for e in _engines.values():
            e.dispose(close=False)
        _engines.clear()
        Tables.cache.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def engine_for(url: str, options: dict[str, Any]) -> sa.Engine:
    """One engine per (URL, pool options) per process: pre-pinged pooled connections with timeouts."""
    connect_timeout = int(float(options.get("connect_timeout", 5)))
    socket_timeout = int(float(options.get("socket_timeout", 30)))
    key = (url, connect_timeout, socket_timeout, int(options.get("pool_size", 5)))
    with _lock:
        eng = _engines.get(key)
        if eng is not None:
            return eng
        backend = sa.engine.make_url(url).get_backend_name()
        kw: dict[str, Any] = {"pool_pre_ping": True, "pool_size": key[3], "max_overflow": 20, "pool_recycle": 3600}
        connect_args: dict[str, Any] = {}
        driver = sa.engine.make_url(url).get_driver_name()
        if backend in ("mysql", "mariadb"):
            kw["isolation_level"] = "READ COMMITTED"  # no gap locks: claims and reaps do not block each other
            if driver in ("pymysql", "mysqldb"):
                connect_args = {"connect_timeout": connect_timeout, "read_timeout": socket_timeout,
                                "write_timeout": socket_timeout}
        elif backend == "postgresql":
            kw["isolation_level"] = "READ COMMITTED"
            if driver in ("psycopg", "psycopg2"):
                connect_args = {"connect_timeout": connect_timeout, "keepalives": 1, "keepalives_idle": 10,
                                "application_name": f"boostkernel-sql:{os.getpid()}"}
        elif backend == "sqlite":
            kw = {"pool_pre_ping": True}
            connect_args = {"timeout": 30, "check_same_thread": False}
        try:
            eng = sa.create_engine(url, connect_args=connect_args, **kw)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
            raise ConfigError(f"sql broker: cannot use URL {sa.engine.make_url(url)!r}: {exc}") from exc
        _engines[key] = eng
        return eng


def now_expr(engine: sa.Engine) -> Any:
    """The database clock as a SQL expression, or ``None`` (then the host's ``time.time()`` is used)."""
    sql = _NOW.get(engine.dialect.name)
    return sa.literal_column(sql, sa.Double()) if sql else None


def skip_locked_supported(engine: sa.Engine) -> bool:
    """``SELECT … FOR UPDATE SKIP LOCKED``: PostgreSQL >= 9.5, MySQL >= 8.0.1, MariaDB >= 10.6, Oracle."""
    name = engine.dialect.name
    if name in ("postgresql", "oracle"):
        return True
    if name in ("mysql", "mariadb"):
        with engine.connect() as c:  # server_version_info is known after the first connection
            c.exec_driver_sql("SELECT 1")
        version = engine.dialect.server_version_info or (0,)
        if getattr(engine.dialect, "is_mariadb", False):
            return tuple(version[:2]) >= (10, 6)
        return tuple(version[:3]) >= (8, 0, 1)
    return False


def is_transient(exc: sa.exc.DBAPIError) -> str | None:
    """``"retry"`` for a deadlock/lock timeout/serialization failure (the transaction was rolled back),
    ``"connection"`` for a lost or refused connection, ``None`` for anything else (a bug: raise it)."""
    orig = exc.orig
    code = orig.args[0] if orig is not None and getattr(orig, "args", None) else None
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if code in (1213, 1205) or sqlstate in ("40001", "40P01") or "database is locked" in str(orig):
        return "retry"
    if exc.connection_invalidated or isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError)):
        return "connection"
    return None


class Tables:
    """The broker's tables (``<prefix>messages``, ``<prefix>consumers``, ``<prefix>dead``), created once."""

    cache: ClassVar[dict[tuple[str, str], Tables]] = {}

    def __init__(self, engine: sa.Engine, prefix: str) -> None:
        self.prefix = prefix
        md = self.metadata = sa.MetaData()
        seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
        body = sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
        name = sa.String(191)  # 191 characters of utf8mb4 fit a MySQL index key
        self.messages = sa.Table(
            f"{prefix}messages", md,
            sa.Column("seq", seq, primary_key=True, autoincrement=True),
            sa.Column("queue", name, nullable=False),
            sa.Column("id", name, nullable=False),
            sa.Column("body", body, nullable=False),
            sa.Column("priority", sa.Integer, nullable=False, default=0),
            sa.Column("eta", sa.Double, nullable=False, default=0.0),
            sa.Column("owner", name, nullable=True),
            sa.Column("running", sa.Boolean, nullable=False, default=False),
            sa.Column("deliveries", sa.Integer, nullable=False, default=0),
            sa.Column("crashes", sa.Integer, nullable=False, default=0),
            sa.Index(f"{prefix}messages_ready", "queue", "owner", "priority", "seq"),
            sa.Index(f"{prefix}messages_owner", "owner"),
        )
        self.consumers = sa.Table(
            f"{prefix}consumers", md,
            sa.Column("owner", name, primary_key=True),
            sa.Column("queue", name, nullable=False),
            sa.Column("beat_at", sa.Double, nullable=False),
        )
        self.dead = sa.Table(
            f"{prefix}dead", md,
            sa.Column("seq", seq, primary_key=True, autoincrement=True),
            sa.Column("queue", name, nullable=False),
            sa.Column("id", name, nullable=False),
            sa.Column("body", body, nullable=False),
            sa.Column("reason", sa.Text, nullable=False),
            sa.Column("failed_at", sa.Double, nullable=False),
            sa.Index(f"{prefix}dead_queue", "queue", "seq"),
        )
        for attempt in range(3):  # several processes may create the tables at once
            try:
                md.create_all(engine, checkfirst=True)
                break
            except sa.exc.DBAPIError:
                if attempt == 2:
                    raise

    @classmethod
    def get(cls, engine: sa.Engine, prefix: str) -> Tables:
        if not _PREFIX.match(prefix):
            raise ConfigError(f"table_prefix {prefix!r} must be letters, digits and _ (at most 41 characters)")
        key = (str(engine.url), prefix)
        with _lock:
            t = cls.cache.get(key)
        if t is None:
            t = cls(engine, prefix)
            with _lock:
                t = cls.cache.setdefault(key, t)
        return t
