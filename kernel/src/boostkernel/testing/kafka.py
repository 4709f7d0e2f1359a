"""The broker contract of the Kafka-protocol brokers (``kafka`` on aiokafka, ``confluent_kafka`` on
librdkafka) against tansu: what both share, written once.

A plugin's test module names its broker and its own differences only::

    class TestMyKafkaContract(KafkaContract):
        def new_broker(self, queue: str, url: str) -> Broker:
            return MyKafkaBroker(queue, url, None, **KAFKA_TEST_OPTIONS)

    @pytest.mark.serial
    class TestMyKafkaPrivateTansu(PrivateTansuTests, TestMyKafkaContract):
        pass

:class:`KafkaContract` runs against the shared tansu (``service_url("kafka")``), whose log is in memory
and must not be restarted; :class:`PrivateTansuTests` runs the tests that restart the server against a
:class:`~boostkernel.testing.private.PrivateTansu` of the class (its log in a private S3).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ..broker import Broker
from .contracts import BrokerContract
from .helpers import service_url
from .private import PrivateTansu

__all__ = ["KAFKA_TEST_OPTIONS", "KafkaContract", "PrivateTansuTests"]

#: Broker options of the contract tests: a dead consumer is noticed after 2 s (``lease_seconds``), and two
#: partitions so that competing consumers each get one.
KAFKA_TEST_OPTIONS: dict[str, Any] = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 300, "partitions": 2,
                                      "revoke_timeout": 2.0}


class KafkaContract(BrokerContract):
    """:class:`BrokerContract` for a Kafka-protocol broker against the shared tansu, with the failures every
    such broker has (a subclass adds its own to ``expected_failures``). It writes :meth:`new_broker`."""

    settle_time = 15.0  # the first consumer-group join of a fresh group takes a few seconds
    lease_seconds = 2.0  # session_timeout_ms of KAFKA_TEST_OPTIONS
    competing_warmup = 10.0  # 4 consumers join the group before the messages flow (no rebalance mid-stream)
    recovery_seconds = 15.0
    expected_failures = {
        "test_durable_across_service_restart": "runs in the PrivateTansuTests class against a private tansu",
    }
    def new_broker(self, queue: str, url: str) -> Broker:
        """The plugin's broker for ``queue`` on the server at ``url`` (with :data:`KAFKA_TEST_OPTIONS`)."""
        raise NotImplementedError("a KafkaContract subclass writes new_broker(queue, url)")

    @pytest.fixture
    def make_broker(self) -> Callable[[str], Broker]:
        url = service_url("kafka")
        return lambda q: self.new_broker(q, url)


class PrivateTansuTests:
    """Mixin, first base before a :class:`KafkaContract` subclass (mark the class ``serial``): the tests that
    restart the server (``only_tests``), against one private tansu per class that stores its log in S3 (a
    private moto server): the shared tansu keeps its log in memory and must not be restarted."""

    only_tests = frozenset({"test_durable_across_service_restart"})
    expected_failures: dict[str, str] = {}

    @pytest.fixture(scope="class")  # one moto and one tansu for the class (its other tests skip)
    @classmethod
    def private(cls) -> Iterator[PrivateTansu]:
        yield from PrivateTansu.serve()

    @pytest.fixture
    def restart_service(self, private: PrivateTansu) -> Callable[[], None]:
        return private.restart

    @pytest.fixture
    def make_broker(self, private: PrivateTansu) -> Callable[[str], Broker]:
        new_broker: Callable[[str, str], Broker] = self.new_broker  # type: ignore[attr-defined]
        return lambda q: new_broker(q, private.url)
