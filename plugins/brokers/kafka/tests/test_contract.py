"""The broker contract against a real Kafka-compatible server (tansu from .ci/services.d/kafka.sh)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from boostkernel.broker import Broker
from boostkernel.testing.helpers import cut_connections_to, service_url
from boostkernel.testing.kafka import KAFKA_TEST_OPTIONS, KafkaContract, PrivateTansuTests

pytestmark = pytest.mark.service("kafka")


class TestKafkaContract(KafkaContract):
    def new_broker(self, queue: str, url: str) -> Broker:
        from boostkernel_kafka.broker import KafkaBroker

        return KafkaBroker(queue, url, None, **KAFKA_TEST_OPTIONS)

    @pytest.fixture
    def cut_connection(self) -> Callable[[Broker], None]:
        return cut_connections_to(service_url("kafka"))


@pytest.mark.serial
class TestKafkaPrivateTansu(PrivateTansuTests, TestKafkaContract):
    """The tests that restart the server, against a private tansu (see PrivateTansuTests)."""
