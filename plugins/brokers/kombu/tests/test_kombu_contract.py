"""The kernel's broker contract through kombu: redis transport (Redis 127.0.0.1:6379), amqp transport
(RabbitMQ 127.0.0.1:5672) and the in-memory transport."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from boostkernel_kombu.broker import KombuBroker

from boostkernel.broker import Broker
from boostkernel.testing import BrokerContract
from boostkernel.testing.helpers import drop_tcp_connections, service_url, wait_until
from boostkernel.testing.private import PrivateRabbitMQ

# the redis transport's lease (heartbeat_interval, dead_after = visibility_timeout, reap_interval), short:
# a killed consumer's messages come back within about 2.5 s
REDIS_LEASE = {"heartbeat_interval": 0.4, "dead_after": 2.0, "reap_interval": 0.5}


def _factory(url: str, **options: object) -> Callable[[], Iterator[Callable[[str], Broker]]]:
    def make_broker(self: object) -> Iterator[Callable[[str], Broker]]:
        made: list[KombuBroker] = []

        def make(queue: str) -> Broker:
            # the contract holds up to 200 unacked deliveries
            b = KombuBroker(queue, url, prefetch=256, **options)
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


def _cutter(port: int, wait_for_empty_queue: bool = False) -> Callable[[object], Callable[[Broker], None]]:
    def cut_connection(self: object) -> Callable[[Broker], None]:
        def cut(broker: Broker) -> None:
            if wait_for_empty_queue:
                # kombu's redis transport pops with BRPOP: a message whose BRPOP reply is cut in transit is
                # gone for good (README, "Honest gaps"), a loss no broker above kombu can undo. Cut once the
                # consumer has popped every waiting message, so what is tested is the part the broker owns:
                # returning the prefetched, unacked messages and reconnecting.
                assert wait_until(lambda: broker.count() == 0, 10.0), "the consumer never drained the queue"
            if not drop_tcp_connections(port):
                pytest.fail("no connection to cut")

        return cut

    return cut_connection


GAPS = {
    "test_durable_across_service_restart": (
        "the shared servers must not be restarted (the amqp transport is tested against a private RabbitMQ "
        "node by TestKombuAmqpDurability). Tried against a private redis-server (AOF, fsync always) "
        "with the contract's short lease (3 December 2026, 5 runs): every run lost 1 of the 6 messages, and not "
        "to the restart: the test SIGKILLs the consumer as soon as it has 2 messages, while kombu is still "
        "popping the rest into its prefetch window, and kombu records a message as unacked only in a second "
        "round trip after its BRPOP popped it, so the one popped at the kill is in neither the queue nor the "
        "unacked hash (seen in Redis: 3 queued + 2 unacked of 6). That is kombu's BRPOP window (docs); the "
        "amqp transport's durability is RabbitMQ's, tested by the rabbitmq plugin against a private node"),
}


class _KombuDelivery(BrokerContract):
    lease_seconds = 1.0
    recovery_seconds = 5.0
    expected_failures = GAPS


@pytest.mark.service("redis")
class TestKombuRedisContract(_KombuDelivery):
    lease_seconds = REDIS_LEASE["dead_after"]  # the visibility_timeout: the live long task is held 6 s
    make_broker = pytest.fixture(_factory("kombu+" + service_url("redis"), **REDIS_LEASE))
    cut_connection = pytest.fixture(_cutter(6379, wait_for_empty_queue=True))


@pytest.mark.service("rabbitmq")
class TestKombuAmqpContract(_KombuDelivery):
    make_broker = pytest.fixture(_factory("kombu+" + service_url("rabbitmq").replace("/%2F", "//")))
    cut_connection = pytest.fixture(_cutter(5672))


class TestKombuMemoryContract(_KombuDelivery):
    make_broker = pytest.fixture(_factory("kombu+memory://"))


@pytest.fixture(scope="module")
def private_rabbitmq() -> Iterator[PrivateRabbitMQ]:
    yield from PrivateRabbitMQ.serve()


class TestKombuAmqpDurability(BrokerContract):
    """kombu's amqp transport across a restart (SIGKILL) of a private RabbitMQ node: its queues are durable
    and its messages persistent. Starting and restarting a node takes 5-20 s, so only this test runs here."""

    only_tests = frozenset({"test_durable_across_service_restart"})
    recovery_seconds = 5.0

    @pytest.fixture
    def make_broker(self, private_rabbitmq: PrivateRabbitMQ) -> Iterator[Callable[[str], Broker]]:
        yield from _factory("kombu+" + private_rabbitmq.url.replace("/%2F", "//"))(self)

    @pytest.fixture
    def restart_service(self, private_rabbitmq: PrivateRabbitMQ) -> Callable[[], None]:
        return private_rabbitmq.restart
