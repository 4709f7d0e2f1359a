"""Chaos on the ``nats`` (JetStream) broker: the kernel's repeated kill -9 scenario (ChaosContract).

400 tasks on one ``boostkernel worker`` process (8 threads) that is SIGKILLed and restarted 4 times.
JetStream does not watch a pull consumer's connection: a killed worker's unacked messages come back when
their ``ack_wait`` (``lease``, 2 s here) expires; live workers keep theirs with in-progress signals.
Checked against a ledger outside NATS: every task ran, nothing is left waiting or dead-lettered.
"""

from __future__ import annotations

from typing import Any

import pytest

from boostkernel.testing.chaos import ChaosContract
from boostkernel.testing.helpers import service_url

pytestmark = [pytest.mark.service("nats"), pytest.mark.timeout(300)]


class TestNatsChaos(ChaosContract):
    @pytest.fixture
    def chaos_boost_options(self) -> dict[str, Any]:
        return {"broker": "nats", "broker_url": service_url("nats"),
                "broker_options": {"lease": 2.0, "heartbeat_interval": 0.4}}
