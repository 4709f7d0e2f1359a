"""The executor contract, run against the threads executor."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from boostkernel_threads.executor import ThreadsExecutor

from boostkernel.executor import Executor
from boostkernel.testing import ExecutorContract


class TestThreadsExecutorContract(ExecutorContract):
    @pytest.fixture
    def make_executor(self) -> Callable[[int], Executor]:
        return ThreadsExecutor
