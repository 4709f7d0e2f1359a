"""The broker contract against a real Kafka-compatible server (tansu from .ci/services.d/kafka.sh)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from boostkernel.broker import Broker
from boostkernel.testing.kafka import KAFKA_TEST_OPTIONS, KafkaContract, PrivateTansuTests
from boostkernel.testing.private import PrivateTansu

pytestmark = pytest.mark.service("kafka")


class TestConfluentKafkaContract(KafkaContract):
    expected_failures = {
        **KafkaContract.expected_failures,
        "test_reconnects_after_connection_cut": "runs in TestConfluentKafkaPrivateTansu: librdkafka's sockets "
                                                "are not reachable from Python, so the cut is a restart of a "
                                                "private server",
    }

    def new_broker(self, queue: str, url: str) -> Broker:
        from boostkernel_confluent_kafka.broker import ConfluentKafkaBroker

        return ConfluentKafkaBroker(queue, url, None, **KAFKA_TEST_OPTIONS)

    @pytest.fixture
    def cut_connection(self) -> Callable[[Broker], None] | None:
        return None


@pytest.mark.serial
class TestConfluentKafkaPrivateTansu(PrivateTansuTests, TestConfluentKafkaContract):
    """The tests that restart the server or cut its connections, against a private tansu."""

    only_tests = frozenset({"test_durable_across_service_restart", "test_reconnects_after_connection_cut"})

    @pytest.fixture
    def cut_connection(self, private: PrivateTansu) -> Callable[[Broker], None]:
        return lambda broker: private.restart()  # a SIGKILL of the server cuts every connection
