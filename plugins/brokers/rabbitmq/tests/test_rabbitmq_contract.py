"""The kernel's broker contract against the real RabbitMQ (127.0.0.1:5672, guest/guest)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from boostkernel_rabbitmq.broker import RabbitmqBroker

from boostkernel.broker import Broker
from boostkernel.testing import BrokerContract
from boostkernel.testing.helpers import drop_tcp_connections, service_url
from boostkernel.testing.private import PrivateRabbitMQ

pytestmark = pytest.mark.service("rabbitmq")


class TestRabbitmqContract(BrokerContract):
    lease_seconds = 1.0  # a live consumer keeps its deliveries as long as its connection lives: no lease
    recovery_seconds = 5.0  # a SIGKILLed consumer's socket closes at once: RabbitMQ requeues its deliveries
    expected_failures = {
        "test_durable_across_service_restart": "the shared RabbitMQ must not be restarted: durability is tested "
                                               "against a private node by TestRabbitmqDurability below",
    }

    @pytest.fixture
    def cut_connection(self) -> Callable[[Broker], None]:
        port = int(service_url("rabbitmq").rsplit(":", 1)[1].split("/")[0])
        return lambda broker: None if drop_tcp_connections(port) else pytest.fail("no connection to cut")

    @pytest.fixture
    def make_broker(self) -> Iterator[Callable[[str], Broker]]:
        made: list[RabbitmqBroker] = []

        def make(queue: str) -> Broker:
            b = RabbitmqBroker(queue, service_url("rabbitmq"), prefetch=256)  # the contract holds up to 200 unacked deliveries
            made.append(b)
            return b

        yield make
        for b in made:
            b.close()
        if made:
            cleaner = RabbitmqBroker(made[0].queue, service_url("rabbitmq"))
            cleaner.delete_queues()
            cleaner.close()


@pytest.fixture(scope="module")
def private_rabbitmq() -> Iterator[PrivateRabbitMQ]:
    yield from PrivateRabbitMQ.serve()


class TestRabbitmqDurability(BrokerContract):
    """Durability across a restart (SIGKILL of the node) of a private RabbitMQ node (its own ports and
    mnesia directory). Starting and restarting a node takes 5-20 s, so only this test runs here."""

    only_tests = frozenset({"test_durable_across_service_restart"})
    recovery_seconds = 5.0

    @pytest.fixture
    def make_broker(self, private_rabbitmq: PrivateRabbitMQ) -> Iterator[Callable[[str], Broker]]:
        made: list[RabbitmqBroker] = []

        def make(queue: str) -> Broker:
            b = RabbitmqBroker(queue, private_rabbitmq.url, prefetch=16)
            made.append(b)
            return b

        yield make
        for b in made:
            b.close()

    @pytest.fixture
    def restart_service(self, private_rabbitmq: PrivateRabbitMQ) -> Callable[[], None]:
        return private_rabbitmq.restart
