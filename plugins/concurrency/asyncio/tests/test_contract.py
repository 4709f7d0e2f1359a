"""The executor contract, run against the asyncio executor."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from boostkernel_asyncio.executor import AsyncioExecutor

from boostkernel.executor import Executor
from boostkernel.testing import ExecutorContract


class TestAsyncioExecutorContract(ExecutorContract):
    @pytest.fixture
    def make_executor(self) -> Callable[[int], Executor]:
        return AsyncioExecutor
