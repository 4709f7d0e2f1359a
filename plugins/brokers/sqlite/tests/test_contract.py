from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from boostkernel_sqlite.broker import SqliteBroker
from boostkernel_sqlite.store import SqliteStore

from boostkernel.broker import Broker
from boostkernel.testing import BrokerContract, StoreContract
from boostkernel.testing.chaos import ChaosContract

#: Short intervals so the delivery tests run in seconds: a 1 s lease, renewed every 0.2 s, reaped every 0.2 s.
FAST = {"lease": 1.0, "heartbeat_interval": 0.2, "reap_interval": 0.2, "max_deliveries": 3}


class TestSqliteBroker(BrokerContract):
    lease_seconds = 1.0
    recovery_seconds = 5.0

    @pytest.fixture
    def make_broker(self, tmp_path: Path) -> Callable[[str], SqliteBroker]:
        url = f"sqlite:///{tmp_path}/queues.db"
        return lambda queue: SqliteBroker(queue, url, **FAST)

    @pytest.fixture
    def cut_connection(self) -> Callable[[Broker], None]:
        def cut(broker: Broker) -> None:  # the file's "connection": closed under the broker
            assert isinstance(broker, SqliteBroker)
            broker.db.conn.close()

        return cut

    @pytest.fixture
    def restart_service(self) -> Callable[[], None]:
        # The "service" is the database file: every process that had it open is gone (the test killed the
        # consumer and closed the broker), so the next broker opens it afresh, as after a reboot.
        return lambda: None


class TestSqliteStore(StoreContract):
    @pytest.fixture
    def make_store(self, tmp_path: Path) -> Callable[[], SqliteStore]:
        return lambda: SqliteStore(f"sqlite:///{tmp_path}/store.db")


class TestSqliteChaos(ChaosContract):
    @pytest.fixture
    def chaos_boost_options(self, tmp_path: Path) -> dict[str, object]:
        return {"broker": "sqlite", "broker_url": f"sqlite:///{tmp_path}/chaos.db",
                "broker_options": {"lease": 2.0, "heartbeat_interval": 0.5, "reap_interval": 0.5}}
