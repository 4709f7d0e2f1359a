"""kombu-specific behaviour: URL resolution, decoration-time errors, and the whole booster path on real
Redis and RabbitMQ through kombu's transports."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from boostkernel_kombu.broker import KombuBroker

from boostkernel import DeadLetter, boost
from boostkernel.booster import REGISTRY
from boostkernel.errors import ConfigError
from boostkernel.testing.helpers import service_url, wait_until

URLS = {
    "redis": "kombu+" + service_url("redis"),
    "rabbitmq": "kombu+" + service_url("rabbitmq").replace("/%2F", "//"),
}


@pytest.fixture
def queue() -> Iterator[str]:
    name = f"t_kombu_{uuid.uuid4().hex[:10]}"
    yield name
    REGISTRY.pop(name, None)


def test_entry_point_imports_no_client_library() -> None:
    code = "import sys, boostkernel_kombu.plugin; assert 'kombu' not in sys.modules, 'kombu imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_kombu_urls_select_this_broker() -> None:
    from boostkernel.plugins import get_plugins

    assert get_plugins().resolve_broker_name("kombu+redis://127.0.0.1:6379/0") == "kombu"
    assert get_plugins().resolve_broker_name("kombu+memory://") == "kombu"


def test_unknown_transport_fails_at_decoration(queue: str) -> None:
    with pytest.raises(ConfigError, match="kombu cannot use broker URL"):
        @boost(queue, broker="kombu+nosuchtransport://localhost")
        def f() -> None: ...


def test_memory_transport_declares_what_it_can_keep() -> None:
    b = KombuBroker("t_mem_caps", "kombu+memory://")
    try:
        assert not b.capabilities.durable and not b.capabilities.cross_process
    finally:
        b.close()


@pytest.mark.parametrize("service", [pytest.param("redis", marks=pytest.mark.service("redis")),
                                     pytest.param("rabbitmq", marks=pytest.mark.service("rabbitmq"))])
def test_booster_end_to_end(service: str, queue: str) -> None:
    url = URLS[service]
    seen: list[int] = []

    @boost(queue, broker=url, concurrency="threads", workers=4)
    def task(i: int) -> None:
        seen.append(i)
        if i == 13:
            raise DeadLetter("unlucky")

    assert task.broker_name == "kombu"
    try:
        task.push_many([(i,) for i in range(50)])
        assert wait_until(lambda: task.count() == 50, 5)
        task.consume()
        assert wait_until(lambda: len(seen) == 50, 20)
        assert sorted(seen) == list(range(50))
        assert wait_until(lambda: [r.reason for r in task.dead_letters()] == ["unlucky"], 5)
        assert wait_until(lambda: task.count() == 0, 5)
    finally:
        task.stop(10)
        task.broker.purge_dead_letters()
        task.broker.delete_queues()
        task.broker.close()
