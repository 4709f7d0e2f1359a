"""celery on RabbitMQ: run by test_contract.py in a child process (one celery worker URL per process)."""

from __future__ import annotations

from typing import Any

import pytest

from boostkernel.testing import FrameworkContract
from boostkernel.testing.helpers import service_url


@pytest.mark.service("rabbitmq")
class TestCeleryRabbitMQ(FrameworkContract):
    unsupported = {"timeout": 5, "qps_scope": "global"}

    @pytest.fixture
    def framework_params(self) -> dict[str, Any]:
        return {"broker": "celery", "broker_url": service_url("rabbitmq")}
