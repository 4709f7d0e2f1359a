"""The kernel's broker contract against the real Mosquitto (127.0.0.1:1883)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from boostkernel_mqtt.broker import MqttBroker

from boostkernel.broker import Broker
from boostkernel.testing import BrokerContract
from boostkernel.testing.chaos import ChaosContract
from boostkernel.testing.helpers import drop_tcp_connections, service_url

pytestmark = pytest.mark.service("mqtt")

#: adopt the anchor every 0.3 s; dead sessions expire after 60 s if nobody adopts them; Receive Maximum 256
FAST = {"adopt_interval": 0.3, "session_expiry": 60, "prefetch": 256}  # the contract holds up to 200 unacked


class TestMqttContract(BrokerContract, ChaosContract):
    lease_seconds = 1.0  # no lease: a live consumer keeps its messages as long as its connection lives
    recovery_seconds = 5.0  # the will is published at once; adoption takes a connect and a round trip
    competing_messages = 1000
    chaos_tasks = 300
    chaos_kills = 3

    @pytest.fixture
    def cut_connection(self) -> Callable[[Broker], None]:
        port = int(service_url("mqtt").rsplit(":", 1)[1])
        return lambda broker: None if drop_tcp_connections(port) else pytest.fail("no connection to cut")

    @pytest.fixture
    def chaos_boost_options(self) -> dict[str, Any]:
        return {"broker": "mqtt", "broker_url": service_url("mqtt"), "broker_options": dict(FAST)}

    @pytest.fixture
    def make_broker(self) -> Iterator[Callable[[str], Broker]]:
        made: list[MqttBroker] = []

        def make(queue: str) -> Broker:
            b = MqttBroker(queue, service_url("mqtt"), **FAST)
            made.append(b)
            return b

        yield make
        for b in made:
            b.close()
        if made:
            cleaner = MqttBroker(made[0].queue, service_url("mqtt"), **FAST)
            cleaner.purge_dead_letters()
            cleaner.drop_anchor()
            cleaner.close()
