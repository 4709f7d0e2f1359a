"""In a process that was not monkey-patched, the gevent mode refuses to start and says exactly what to do."""

from __future__ import annotations

import pytest
from boostkernel_gevent.executor import GeventExecutor
from gevent import monkey

from boostkernel.testing.green import UnpatchedGreenContract

pytestmark = pytest.mark.skipif(monkey.is_module_patched("socket"), reason="runs in the unpatched pytest process")


class TestUnpatchedGevent(UnpatchedGreenContract):
    executor_class = GeventExecutor
