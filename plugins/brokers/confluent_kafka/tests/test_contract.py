"""The broker contract against a real Kafka-compatible server (tansu from .ci/services.d/kafka.sh)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from boostkernel.broker import Broker
from boostkernel.testing import BrokerContract
from boostkernel.testing.helpers import service_url

pytestmark = pytest.mark.service("kafka")


class TestConfluentKafkaContract(BrokerContract):
    settle_time = 15.0  # the first consumer-group join of a fresh group takes a few seconds

    @pytest.fixture
    def make_broker(self) -> Callable[[str], Broker]:
        from boostkernel_confluent_kafka.broker import ConfluentKafkaBroker

        return lambda q: ConfluentKafkaBroker(q, service_url("kafka"), None, session_timeout_ms=2000,
                                              heartbeat_interval_ms=300, partitions=2, revoke_timeout=2.0)
