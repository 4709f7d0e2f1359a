"""The framework-broker contract on nameko, run by test_contract.py in an eventlet-patched child process."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from boostkernel import boost
from boostkernel.booster import REGISTRY
from boostkernel.testing import FrameworkContract
from boostkernel.testing.helpers import service_url


@pytest.mark.service("rabbitmq")
class TestNamekoRabbitMQ(FrameworkContract):
    unsupported = {"timeout": 5, "qps": 5, "expires": 10, "retry_jitter": False, "dedup": True}

    @pytest.fixture
    def framework_params(self) -> dict[str, Any]:
        return {"broker": "nameko", "broker_url": service_url("rabbitmq"), "retry_backoff": 0.2}


@pytest.mark.service("rabbitmq")
def test_the_function_is_a_nameko_rpc_method(tmp_path: Path) -> None:
    """Other nameko services (or a standalone proxy) call the booster's function synchronously over RPC."""
    from nameko.standalone.rpc import ClusterRpcProxy

    queue = f"nk_rpc_{uuid.uuid4().hex[:8]}"

    @boost(queue, broker="nameko", broker_url=service_url("rabbitmq"), data_dir=str(tmp_path))
    def multiply(x: int, y: int = 2) -> int:
        return x * y

    try:
        multiply.consume()
        with ClusterRpcProxy({"AMQP_URI": service_url("rabbitmq")}, timeout=20) as proxy:
            assert getattr(proxy, queue).call(21) == 42
            assert getattr(proxy, queue).call(3, y=5) == 15
    finally:
        multiply.stop(10)
        multiply.purge()
        REGISTRY.pop(queue, None)
