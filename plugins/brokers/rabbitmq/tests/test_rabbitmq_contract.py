"""The kernel's broker contract against the real RabbitMQ (127.0.0.1:5672, guest/guest)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from boostkernel_rabbitmq.broker import RabbitmqBroker

from boostkernel.broker import Broker
from boostkernel.testing import BrokerContract
from boostkernel.testing.helpers import service_url

pytestmark = pytest.mark.service("rabbitmq")


class TestRabbitmqContract(BrokerContract):
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
