"""The framework-broker contract against rq on the real Redis."""

from __future__ import annotations

from typing import Any

import pytest

from boostkernel.testing import FrameworkContract
from boostkernel.testing.helpers import service_url


@pytest.mark.service("redis")
class TestRQRedis(FrameworkContract):
    unsupported = {"qps": 5, "timeout": 0.5, "dedup": True}

    @pytest.fixture
    def framework_params(self) -> dict[str, Any]:
        return {"broker": "rq", "broker_url": service_url("redis"), "workers": 2}
