from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from boostkernel_sqlite.broker import SqliteBroker
from boostkernel_sqlite.store import SqliteStore

from boostkernel.testing import BrokerContract, StoreContract


class TestSqliteBroker(BrokerContract):
    @pytest.fixture
    def make_broker(self, tmp_path: Path) -> Callable[[str], SqliteBroker]:
        url = f"sqlite:///{tmp_path}/queues.db"
        return lambda queue: SqliteBroker(queue, url)


class TestSqliteStore(StoreContract):
    @pytest.fixture
    def make_store(self, tmp_path: Path) -> Callable[[], SqliteStore]:
        return lambda: SqliteStore(f"sqlite:///{tmp_path}/store.db")
