"""The executor contract, run against the solo executor."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from boostkernel_solo.executor import SoloExecutor

from boostkernel.executor import Executor
from boostkernel.testing import ExecutorContract


class TestSoloExecutorContract(ExecutorContract):
    @pytest.fixture
    def make_executor(self) -> Callable[[int], Executor]:
        return SoloExecutor
