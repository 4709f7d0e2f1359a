"""Databases for the sql broker tests: a MariaDB database and a PostgreSQL schema of their own, plus
unique table prefixes per test session (dropped at the end)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from boostkernel.testing.helpers import service_reachable, service_url

MYSQL_DB = "boostkernel_test"


def mysql_url() -> str:
    """``mysql+pymysql://`` form of the ``mysql`` service URL, on the test database."""
    from urllib.parse import urlparse

    u = urlparse(service_url("mysql"))
    auth = u.username or "root"
    if u.password:
        auth += f":{u.password}"
    return f"mysql+pymysql://{auth}@{u.hostname or '127.0.0.1'}:{u.port or 3306}/{MYSQL_DB}"


def pg_url(schema: str) -> str:
    from urllib.parse import urlparse

    u = urlparse(service_url("postgres"))
    return f"postgresql+psycopg://{u.netloc}{u.path}?options=-csearch_path%3D{schema}"


@pytest.fixture(scope="session")
def table_prefix() -> str:
    return f"bkt{uuid.uuid4().hex[:8]}_"


@pytest.fixture(scope="session")
def mysql_db(table_prefix: str) -> Iterator[str]:
    import pymysql

    if not service_reachable("mysql"):
        yield mysql_url()
        return
    from urllib.parse import urlparse

    u = urlparse(service_url("mysql"))
    conn = pymysql.connect(host=u.hostname or "127.0.0.1", port=u.port or 3306, user=u.username or "root",
                           password=u.password or "", autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {MYSQL_DB}")
    yield mysql_url()
    with conn.cursor() as cur:
        for t in ("messages", "consumers", "dead"):
            cur.execute(f"DROP TABLE IF EXISTS {MYSQL_DB}.{table_prefix}{t}")
    conn.close()


@pytest.fixture(scope="session")
def pg_db() -> Iterator[str]:
    schema = f"bk_sqltest_{uuid.uuid4().hex[:8]}"
    if not service_reachable("postgres"):
        yield pg_url(schema)
        return
    import psycopg

    with psycopg.connect(service_url("postgres"), autocommit=True) as c:
        c.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    yield pg_url(schema)
    with psycopg.connect(service_url("postgres"), autocommit=True) as c:
        c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
