"""The boostkernel contract suite against the real PostgreSQL (a schema of its own, unique queue names).

The durability test restarts the server: it runs against a private PostgreSQL started for the session
(``boostkernel.testing.private``), never the shared one."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from boostkernel.broker import Broker
from boostkernel.store import Store
from boostkernel.testing import BrokerContract, StoreContract
from boostkernel.testing.helpers import service_url
from boostkernel.testing.private import PrivatePostgres

pytestmark = pytest.mark.service("postgres")

#: Short intervals so the delivery tests run in seconds, yet a live worker whose heartbeat waits on a busy
#: shared server (a loaded CI machine) is not declared dead: heartbeats every 0.25 s, dead after 2 s.
FAST = {"heartbeat_interval": 0.25, "dead_after": 2.0, "reap_interval": 0.3, "max_deliveries": 3}


@pytest.fixture(scope="session")
def private_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivatePostgres]:
    yield from PrivatePostgres.serve(tmp_path_factory)


class TestPostgresBroker(BrokerContract):
    lease_seconds = 2.0
    recovery_seconds = 6.0

    @pytest.fixture
    def make_broker(self, request: pytest.FixtureRequest, pg_schema: str) -> Iterator[Callable[[str], Broker]]:
        from boostkernel_postgres.broker import PostgresBroker

        url = service_url("postgres")
        if "restart_service" in request.fixturenames:  # this test restarts the server: use the private one
            url = request.getfixturevalue("private_pg").url
        made: list[Broker] = []

        def make(queue: str) -> Broker:
            b = PostgresBroker(queue, url, None, schema=pg_schema, **FAST)
            made.append(b)
            return b

        yield make
        for b in made:
            b.close()

    @pytest.fixture
    def cut_connection(self) -> Callable[[Broker], None]:
        def cut(broker: Broker) -> None:  # pg_terminate_backend of every connection the broker holds
            assert broker.cut_connections() >= 1  # type: ignore[attr-defined]

        return cut

    @pytest.fixture
    def restart_service(self, private_pg: PrivatePostgres) -> Callable[[], None]:
        return private_pg.restart


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
