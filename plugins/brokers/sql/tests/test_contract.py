"""The boostkernel broker contract on real databases through SQLAlchemy: MariaDB (SKIP LOCKED), PostgreSQL
(SKIP LOCKED), and MariaDB again with the optimistic claim that databases without SKIP LOCKED use."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from boostkernel.broker import Broker
from boostkernel.testing import BrokerContract

FAST = {"heartbeat_interval": 0.2, "dead_after": 1.0, "reap_interval": 0.3}


def _maker(url: str, prefix: str, **options: Any) -> Iterator[Callable[[str], Broker]]:
    from boostkernel_sql.broker import SqlBroker

    made: list[Broker] = []

    def make(queue: str) -> Broker:
        b = SqlBroker(queue, url, None, table_prefix=prefix, **FAST, **options)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


@pytest.mark.service("mysql")
class TestSqlMariaDB(BrokerContract):
    @pytest.fixture
    def make_broker(self, mysql_db: str, table_prefix: str) -> Iterator[Callable[[str], Broker]]:
        yield from _maker(mysql_db, table_prefix)

    def test_mariadb_uses_skip_locked(self, broker: Broker) -> None:
        assert broker.describe()["claim"] == "skip_locked"


@pytest.mark.service("mysql")
class TestSqlMariaDBOptimistic(BrokerContract):
    @pytest.fixture
    def make_broker(self, mysql_db: str, table_prefix: str) -> Iterator[Callable[[str], Broker]]:
        yield from _maker(mysql_db, table_prefix, claim="optimistic")


@pytest.mark.service("postgres")
class TestSqlPostgres(BrokerContract):
    @pytest.fixture
    def make_broker(self, pg_db: str, table_prefix: str) -> Iterator[Callable[[str], Broker]]:
        yield from _maker(pg_db, table_prefix)
