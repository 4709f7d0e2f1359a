"""In a process that was not monkey-patched, the eventlet mode refuses to start and says exactly what to do."""

from __future__ import annotations

import warnings

import pytest

with warnings.catch_warnings():  # eventlet warns on import that it is deprecated
    warnings.simplefilter("ignore")
    from eventlet import patcher

from boostkernel_eventlet.executor import EventletExecutor

from boostkernel.testing.green import UnpatchedGreenContract

pytestmark = pytest.mark.skipif(patcher.is_monkey_patched("socket"), reason="runs in the unpatched pytest process")


class TestUnpatchedEventlet(UnpatchedGreenContract):
    executor_class = EventletExecutor
