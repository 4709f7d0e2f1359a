from __future__ import annotations

from collections.abc import Callable

import pytest
from boostkernel_memory.broker import MemoryBroker
from boostkernel_memory.store import MemoryStore

from boostkernel.testing import BrokerContract, StoreContract


class TestMemoryBroker(BrokerContract):
    @pytest.fixture
    def make_broker(self) -> Callable[[str], MemoryBroker]:
        return lambda queue: MemoryBroker(queue)


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def make_store(self) -> Callable[[], MemoryStore]:
        return MemoryStore
