"""The broker contract for pulsar - runs only where a server is given.

No pulsar server can run on the machines that build boostkernel (no Debian or PyPI package ships one; see the
README), so this class **skips** unless ``BOOSTKERNEL_PULSAR_URL`` names a server. It is never run against a
mock: a skipped contract is reported as skipped, not as passing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from boostkernel.broker import Broker
from boostkernel.testing import BrokerContract
from boostkernel.testing.helpers import BrokerFactory

URL = os.environ.get("BOOSTKERNEL_PULSAR_URL")
FAST = {"negative_ack_delay": 0.5}


class TestPulsarBrokerContract(BrokerContract):
    lease_seconds = 1.0
    recovery_seconds = 10.0

    @pytest.fixture
    def make_broker(self) -> Iterator[Callable[[str], Broker]]:
        if not URL:
            pytest.skip("no server: no pulsar server can run here; set BOOSTKERNEL_PULSAR_URL to run the contract")
        from boostkernel_pulsar.broker import PulsarBroker

        factory = BrokerFactory(PulsarBroker, URL, **FAST)
        yield factory
        factory.close_all()
