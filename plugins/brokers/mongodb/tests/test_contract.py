"""The broker contract for MongoDB — runs only where a MongoDB server is given.

No MongoDB server can run on the machines that build boostkernel (no Debian package; see the README), so
this class skips unless ``BOOSTKERNEL_MONGODB_URL`` names a server, e.g.
``BOOSTKERNEL_MONGODB_URL=mongodb://127.0.0.1:27017/bktest uv run pytest plugins/brokers/mongodb``.
It is never run against a mock: a skipped contract is reported as skipped, not as passing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from boostkernel.broker import Broker
from boostkernel.testing import BrokerContract
from boostkernel.testing.helpers import BrokerFactory

URL = os.environ.get("BOOSTKERNEL_MONGODB_URL")
FAST = {"heartbeat_interval": 0.25, "dead_after": 2.0, "reap_interval": 0.3, "max_deliveries": 3}


class TestMongoBroker(BrokerContract):
    lease_seconds = 2.0
    recovery_seconds = 6.0

    @pytest.fixture
    def make_broker(self) -> Iterator[Callable[[str], Broker]]:
        if not URL:
            pytest.skip("no MongoDB server here: set BOOSTKERNEL_MONGODB_URL to run the contract against one")
        from boostkernel_mongodb.broker import MongoBroker

        factory = BrokerFactory(MongoBroker, URL, **FAST)
        yield factory
        factory.close_all()
