"""The framework-broker contract against huey on the real Redis."""

from __future__ import annotations

from typing import Any

import pytest

from boostkernel.testing import FrameworkContract
from boostkernel.testing.helpers import service_url


@pytest.mark.service("redis")
class TestHueyRedis(FrameworkContract):
    unsupported = {"timeout": 5, "retry_backoff_max": 10.0, "qps": 1, "dedup": True}

    @pytest.fixture
    def framework_params(self) -> dict[str, Any]:
        return {"broker": "huey", "broker_url": service_url("redis"), "workers": 2}
