"""The kernel's broker contract through kombu: redis transport (Redis 127.0.0.1:6379), amqp transport
(RabbitMQ 127.0.0.1:5672) and the in-memory transport."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from boostkernel_kombu.broker import KombuBroker

from boostkernel.broker import Broker
from boostkernel.testing import BrokerContract
from boostkernel.testing.helpers import service_url


def _factory(url: str) -> Callable[[], Iterator[Callable[[str], Broker]]]:
    def make_broker(self: object) -> Iterator[Callable[[str], Broker]]:
        made: list[KombuBroker] = []

        def make(queue: str) -> Broker:
            b = KombuBroker(queue, url, prefetch=256)  # the contract holds up to 200 unacked deliveries
            made.append(b)
            return b

        yield make
        for b in made:
            b.close()
        if made:
            cleaner = KombuBroker(made[0].queue, url)
            cleaner.delete_queues()
            cleaner.close()

    return make_broker


@pytest.mark.service("redis")
class TestKombuRedisContract(BrokerContract):
    make_broker = pytest.fixture(_factory("kombu+" + service_url("redis")))


@pytest.mark.service("rabbitmq")
class TestKombuAmqpContract(BrokerContract):
    make_broker = pytest.fixture(_factory("kombu+" + service_url("rabbitmq").replace("/%2F", "//")))


class TestKombuMemoryContract(BrokerContract):
    make_broker = pytest.fixture(_factory("kombu+memory://"))
