"""Issue #12: with results=True, dramatiq's worker must not warn per task that the value was discarded
(boostkernel records the result in its own store; the actor returns nothing to dramatiq)."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest

from boostkernel import boost
from boostkernel.booster import REGISTRY
from boostkernel.testing.helpers import service_url


@pytest.mark.service("redis")
def test_results_true_logs_no_results_middleware_warning(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    queue = f"dq_res_{uuid.uuid4().hex[:8]}"

    @boost(queue, broker="dramatiq", broker_url=service_url("redis"), results=True, data_dir=str(tmp_path))
    def add(x: int, y: int) -> int:
        return x + y

    try:
        with caplog.at_level(logging.WARNING):
            add.consume()
            results = [add.push(i, 1) for i in range(3)]
            assert [r.get(20) for r in results] == [1, 2, 3]
        assert "Results middleware" not in caplog.text
    finally:
        add.stop(10)
        add.purge()
        REGISTRY.pop(queue, None)
