"""The contract suite every plugin passes, and test helpers.

A plugin author writes::

    from boostkernel.testing import BrokerContract

    class TestMyBroker(BrokerContract):
        @pytest.fixture
        def make_broker(self):
            return lambda queue: MyBroker(queue, url="...")

and runs pytest with ``-p boostkernel.testing.plugin`` (service markers, ``unique_queue``).
"""

from __future__ import annotations

from .contracts import BrokerContract, ExecutorContract, StoreContract, requires
from .control_contract import ControlContract
from .framework_contract import FrameworkContract as FrameworkContract
from .helpers import service_reachable, wait_until

__all__ = ["BrokerContract", "ControlContract", "ExecutorContract", "StoreContract", "requires", "service_reachable", "wait_until"]
