"""Chaos on the ``beanstalkd`` broker: the kernel's repeated kill -9 scenario (ChaosContract).

400 tasks on one ``boostkernel worker`` process (8 threads) that is SIGKILLed and restarted 4 times.
beanstalkd releases every job reserved by a connection the moment it closes, so a killed worker's jobs
are back at once; the TTR (5 s here, touched every second) only bounds a hung consumer. Checked against a
ledger outside beanstalkd: every task ran, nothing is left waiting or buried.
"""

from __future__ import annotations

from typing import Any

import pytest

from boostkernel.testing.chaos import ChaosContract
from boostkernel.testing.helpers import service_url

pytestmark = [pytest.mark.service("beanstalkd"), pytest.mark.timeout(300)]


class TestBeanstalkdChaos(ChaosContract):
    @pytest.fixture
    def chaos_boost_options(self) -> dict[str, Any]:
        return {"broker": "beanstalkd", "broker_url": service_url("beanstalkd"),
                "broker_options": {"ttr": 5, "heartbeat_interval": 1.0}}
