"""The whole broker contract for the example plugin: subclass, override one fixture."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from boostkernel_dirqueue.broker import DirQueueBroker

from boostkernel.testing import BrokerContract


class TestDirQueueBroker(BrokerContract):
    @pytest.fixture
    def make_broker(self, tmp_path: Path) -> Callable[[str], DirQueueBroker]:
        return lambda queue: DirQueueBroker(queue, f"dirqueue://{tmp_path}")


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
