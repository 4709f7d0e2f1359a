"""The boostkernel broker contract on real databases through SQLAlchemy: MariaDB (SKIP LOCKED), MariaDB
with the optimistic claim that databases without SKIP LOCKED use, and PostgreSQL.

Tests that restart the server run against private MariaDB / PostgreSQL servers started for the session
(``boostkernel.testing.private``), never the shared ones."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from boostkernel.broker import Broker
from boostkernel.testing import BrokerContract
from boostkernel.testing.private import PrivateMariaDB, PrivatePostgres

#: Short intervals so the delivery tests run in seconds, yet a live worker whose heartbeat commit waits on a
#: busy shared server (a loaded CI machine) is not declared dead: heartbeats every 0.25 s, dead after 2.5 s.
FAST = {"heartbeat_interval": 0.25, "dead_after": 2.5, "reap_interval": 0.3, "max_deliveries": 3}


@pytest.fixture(scope="session")
def private_mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateMariaDB]:
    if not PrivateMariaDB.available():
        pytest.skip("MariaDB server binaries are not installed")
    import pymysql

    db = PrivateMariaDB.start(Path(tmp_path_factory.mktemp("private-mariadb")))
    c = pymysql.connect(host="127.0.0.1", port=db.port, user="root", autocommit=True)
    c.cursor().execute("CREATE DATABASE boostkernel_test")
    c.close()
    yield db
    db.stop()


@pytest.fixture(scope="session")
def private_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivatePostgres]:
    yield from PrivatePostgres.serve(tmp_path_factory)


class _SqlContract(BrokerContract):
    lease_seconds = 2.5
    recovery_seconds = 8.0
    competing_messages = 500
    options: dict[str, Any] = {}

    def url(self, request: pytest.FixtureRequest, private: bool) -> str:
        raise NotImplementedError

    @pytest.fixture
    def make_broker(self, request: pytest.FixtureRequest, table_prefix: str) -> Iterator[Callable[[str], Broker]]:
        from boostkernel_sql.broker import SqlBroker

        # a test that restarts the server gets a broker on the private one
        url = self.url(request, "restart_service" in request.fixturenames)
        made: list[Broker] = []

        def make(queue: str) -> Broker:
            b = SqlBroker(queue, url, None, table_prefix=table_prefix, **FAST, **self.options)
            made.append(b)
            return b

        yield make
        for b in made:
            b.close()


class _MariaDB(_SqlContract):
    def url(self, request: pytest.FixtureRequest, private: bool) -> str:
        if private:
            return f"mysql+pymysql://root@127.0.0.1:{request.getfixturevalue('private_mariadb').port}/boostkernel_test"
        return str(request.getfixturevalue("mysql_db"))

    @pytest.fixture
    def cut_connection(self) -> Callable[[Broker], None]:
        from .test_reliability import kill_connections_to_test_db

        return lambda broker: None if kill_connections_to_test_db() else pytest.fail("no connection to cut")

    @pytest.fixture
    def restart_service(self, private_mariadb: PrivateMariaDB) -> Callable[[], None]:
        return private_mariadb.restart


@pytest.mark.service("mysql")
class TestSqlMariaDB(_MariaDB):
    def test_mariadb_uses_skip_locked(self, broker: Broker) -> None:
        assert broker.describe()["claim"] == "skip_locked"


@pytest.mark.service("mysql")
class TestSqlMariaDBOptimistic(_MariaDB):
    options = {"claim": "optimistic"}


@pytest.mark.service("postgres")
class TestSqlPostgres(_SqlContract):
    def url(self, request: pytest.FixtureRequest, private: bool) -> str:
        if private:
            return f"postgresql+psycopg://postgres@127.0.0.1:{request.getfixturevalue('private_pg').port}/postgres"
        return str(request.getfixturevalue("pg_db"))

    @pytest.fixture
    def cut_connection(self) -> Callable[[Broker], None]:
        def cut(broker: Broker) -> None:  # every connection of this test process's sql engines
            import psycopg

            from boostkernel.testing.helpers import service_url

            with psycopg.connect(service_url("postgres"), autocommit=True) as c:
                n = c.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                              "WHERE application_name = %s", (f"boostkernel-sql:{os.getpid()}",)).fetchone()
            assert n is not None and n[0] >= 1, "no connection to cut"

        return cut

    @pytest.fixture
    def restart_service(self, private_pg: PrivatePostgres) -> Callable[[], None]:
        return private_pg.restart
