"""Chaos on the ``stomp`` broker (ActiveMQ, 127.0.0.1:61613): the kernel's kill -9 scenario.

``ChaosContract`` publishes 400 tasks of 50-200 ms, runs ``boostkernel worker`` (8 threads) in a
subprocess, SIGKILLs and restarts it every 1.5 s, 4 times, then lets it drain and stops it with SIGTERM.
Every execution is recorded in a SQLite ledger outside ActiveMQ before the task returns (so before its
ACK). Checked: 0 lost, no unexpected task, a clean SIGTERM exit, an empty dead-letter queue (kill -9
alone never dead-letters: ``max_deliveries=50``), nothing left in the queue; duplicates and the longest
stall are printed. ActiveMQ redelivers a killed worker's unacknowledged messages as soon as its TCP
connection closes, so the stall is the restart time of the worker.
"""

from __future__ import annotations

import pytest

from boostkernel.testing.chaos import ChaosContract
from boostkernel.testing.helpers import service_url

pytestmark = [pytest.mark.service("stomp"), pytest.mark.timeout(300)]


class TestStompChaos(ChaosContract):
    @pytest.fixture
    def chaos_boost_options(self) -> dict[str, object]:
        return {"broker": "stomp", "broker_url": service_url("stomp"), "broker_options": {"heartbeat": 2.0}}
