"""The kernel's broker contract against the real RabbitMQ (127.0.0.1:5672, guest/guest)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from boostkernel_rabbitmq.broker import RabbitmqBroker

from boostkernel.broker import Broker
from boostkernel.testing import BrokerContract
from boostkernel.testing.helpers import closing_brokers, service_url

pytestmark = pytest.mark.service("rabbitmq")


class TestRabbitmqContract(BrokerContract):
    @pytest.fixture
    def make_broker(self) -> Iterator[Callable[[str], Broker]]:
        # prefetch: the contract holds up to 200 unacked deliveries
        yield from closing_brokers(lambda q: RabbitmqBroker(q, service_url("rabbitmq"), prefetch=256),
                                   delete_queues=True)
