"""The full at-least-once contract on the file broker, with short heartbeat settings."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from boostkernel_file.broker import FileBroker

from boostkernel.broker import Broker
from boostkernel.testing import BrokerContract

#: A consumer silent for 2 s is dead; heartbeats and the reaper every 0.2 s. (With 1 s, a consumer process
#: stalled for a second on the loaded 2-core CI machine was once taken for dead: 8 duplicates.)
FAST = {"dead_after": 2.0, "heartbeat_interval": 0.2, "reap_interval": 0.2, "max_deliveries": 3}


class TestFileBroker(BrokerContract):
    lease_seconds = 2.0
    recovery_seconds = 6.0

    @pytest.fixture
    def make_broker(self, tmp_path: Path) -> Callable[[str], FileBroker]:
        url = f"file://{tmp_path}/queues"
        return lambda queue: FileBroker(queue, url, **FAST)

    @pytest.fixture
    def cut_connection(self) -> Callable[[Broker], None]:
        """A file broker holds no connection; what can go wrong under it is its folder and its watcher.
        Both are taken away: the change-notification observer is stopped, and its in-flight folder is
        moved to reaping/ under a reaper that does not exist (as if a reaper had judged it dead and then
        died itself). The broker must carry on (new folder) and the orphaned folder must be adopted."""

        def cut(broker: Broker) -> None:
            assert isinstance(broker, FileBroker)
            broker._stop_watch()
            os.rename(broker.mine, broker.reaping / f"{broker.owner}@nobody:0:gone")
            broker.hb_file.unlink()

        return cut

    @pytest.fixture
    def restart_service(self) -> Callable[[], None]:
        # The "service" is the directory: every process that used it is gone (the test killed the consumer
        # and closed the broker), so the next broker finds the files as after a reboot.
        return lambda: None
