"""The boostkernel contract suite against the real PostgreSQL (a schema of its own, unique queue names)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from boostkernel.broker import Broker
from boostkernel.store import Store
from boostkernel.testing import BrokerContract, StoreContract
from boostkernel.testing.helpers import service_url

pytestmark = pytest.mark.service("postgres")

FAST = {"heartbeat_interval": 0.2, "dead_after": 1.0, "reap_interval": 0.3}


class TestPostgresBroker(BrokerContract):
    @pytest.fixture
    def make_broker(self, pg_schema: str) -> Iterator[Callable[[str], Broker]]:
        from boostkernel_postgres.broker import PostgresBroker

        made: list[Broker] = []

        def make(queue: str) -> Broker:
            b = PostgresBroker(queue, service_url("postgres"), None, schema=pg_schema, **FAST)
            made.append(b)
            return b

        yield make
        for b in made:
            b.close()


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def make_store(self, pg_schema: str) -> Iterator[Callable[[], Store]]:
        from boostkernel_postgres.store import PostgresStore

        made: list[Store] = []

        def make() -> Store:
            s = PostgresStore(service_url("postgres"), None, schema=pg_schema)
            made.append(s)
            return s

        yield make
        for s in made:
            s.close()
