"""The whole broker contract for the example plugin: subclass, override one fixture."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from boostkernel_dirqueue.broker import DirQueueBroker

from boostkernel.testing import BrokerContract
from boostkernel.testing.chaos import ChaosContract

#: Short intervals for the delivery tests: a consumer silent for 1 s is dead.
FAST = {"dead_after": 1.0, "heartbeat_interval": 0.2, "reap_interval": 0.2, "max_deliveries": 3}


class TestDirQueueBroker(BrokerContract):
    lease_seconds = 1.0
    recovery_seconds = 5.0
    expected_failures = {
        "test_reconnects_after_connection_cut": "a directory has no connection to cut",
    }

    @pytest.fixture
    def make_broker(self, tmp_path: Path) -> Callable[[str], DirQueueBroker]:
        return lambda queue: DirQueueBroker(queue, f"dirqueue://{tmp_path}", **FAST)

    @pytest.fixture
    def restart_service(self) -> Callable[[], None]:
        return lambda: None  # the "service" is the directory: the consumer holding messages was killed


class TestDirQueueChaos(ChaosContract):
    @pytest.fixture
    def chaos_boost_options(self, tmp_path: Path) -> dict[str, object]:
        return {"broker": "dirqueue", "broker_url": f"dirqueue://{tmp_path}/queues",
                "broker_options": {"dead_after": 2.0, "reap_interval": 0.5}}


def test_it_is_a_working_boostkernel_broker(tmp_path: Path) -> None:
    """End to end through @boost: the plugin is found by its entry point, like any installed plugin."""
    from boostkernel import boost
    from boostkernel.testing import wait_until

    seen: list[int] = []

    @boost("dirqueue_e2e", broker=f"dirqueue://{tmp_path}", workers=4)
    def note(i: int) -> None:
        seen.append(i)

    note.push_many([(i,) for i in range(20)])
    note.consume()
    try:
        assert wait_until(lambda: sorted(seen) == list(range(20)), timeout=10)
    finally:
        note.stop()
