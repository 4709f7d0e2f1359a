"""The broker contract for RocketMQ 5 - runs only where a server is given.

No RocketMQ server can run on the machines that build boostkernel (no Debian or PyPI package ships one;
see docs/brokers/rocketmq.md), so this class **skips** unless ``BOOSTKERNEL_ROCKETMQ_URL`` names a proxy
endpoint (``rocketmq://HOST:8081``) whose topic and group exist. It is never run against a mock: a
skipped contract is reported as skipped, not as passing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from boostkernel.broker import Broker
from boostkernel.testing import BrokerContract
from boostkernel.testing.helpers import BrokerFactory

URL = os.environ.get("BOOSTKERNEL_ROCKETMQ_URL")
FAST = {"invisible_duration": 3.0, "heartbeat_interval": 0.5}


class TestRocketmqBrokerContract(BrokerContract):
    lease_seconds = 3.0
    recovery_seconds = 10.0

    @pytest.fixture
    def make_broker(self) -> Iterator[Callable[[str], Broker]]:
        if not URL:
            pytest.skip("no server: no RocketMQ server can run here; set BOOSTKERNEL_ROCKETMQ_URL to run the contract")
        from boostkernel_rocketmq.broker import RocketmqBroker

        factory = BrokerFactory(RocketmqBroker, URL, **FAST)
        yield factory
        factory.close_all()
