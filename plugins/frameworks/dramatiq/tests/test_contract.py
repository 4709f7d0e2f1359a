"""The framework-broker contract against dramatiq on the real Redis and RabbitMQ."""

from __future__ import annotations

from typing import Any

import pytest

from boostkernel.testing import FrameworkContract
from boostkernel.testing.helpers import service_url


@pytest.mark.service("redis")
class TestDramatiqRedis(FrameworkContract):
    unsupported = {"qps": 5, "retry_jitter": False, "dedup": True}

    @pytest.fixture
    def framework_params(self) -> dict[str, Any]:
        return {"broker": "dramatiq", "broker_url": service_url("redis")}


@pytest.mark.service("rabbitmq")
class TestDramatiqRabbitMQ(FrameworkContract):
    unsupported = {"qps": 5}

    @pytest.fixture
    def framework_params(self) -> dict[str, Any]:
        return {"broker": "dramatiq", "broker_url": service_url("rabbitmq")}
