"""The kernel's broker contract against the real beanstalkd (127.0.0.1:11300, started by
.ci/services.d/beanstalkd.sh), and the durability test against a private beanstalkd (its own port and
binlog directory) that the test restarts."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from boostkernel_beanstalkd.broker import BeanstalkdBroker

from boostkernel.broker import Broker
from boostkernel.testing import BrokerContract
from boostkernel.testing.helpers import BrokerFactory, cut_connections_to, service_url
from boostkernel.testing.private import PrivateProcess

pytestmark = pytest.mark.service("beanstalkd")

#: TTR 2 s, touched every 0.4 s (a killed consumer's jobs come back at once: its socket closes).
FAST = {"ttr": 2, "heartbeat_interval": 0.4}
BEANSTALKD = shutil.which("beanstalkd") or "/usr/bin/beanstalkd"


class _Factory(BrokerFactory):
    def __init__(self, url: str) -> None:
        super().__init__(BeanstalkdBroker, url, **FAST)

    def cleanup(self) -> None:
        self.close_all()
        if self.made:
            cleaner = BeanstalkdBroker(self.made[0].queue, self.url)
            try:
                cleaner.purge()
                cleaner.purge_dead_letters()
            finally:
                cleaner.close()


class TestBeanstalkdContract(BrokerContract):
    lease_seconds = 2.0  # the TTR the jobs are put with; touched every 0.4 s while held
    recovery_seconds = 5.0  # a SIGKILLed consumer's socket closes: beanstalkd releases its jobs at once
    expected_failures = {
        "test_durable_across_service_restart": "runs in TestBeanstalkdDurability against a private beanstalkd",
    }

    @pytest.fixture
    def cut_connection(self) -> Callable[[Broker], None]:
        return cut_connections_to(service_url("beanstalkd"))

    @pytest.fixture
    def make_broker(self) -> Iterator[Callable[[str], Broker]]:
        f = _Factory(service_url("beanstalkd"))
        yield f
        f.cleanup()


class _PrivateBeanstalkd(PrivateProcess):
    def __init__(self, base: Path) -> None:
        super().__init__()
        self.binlog = base / "binlog"
        self.binlog.mkdir(parents=True, exist_ok=True)
        self.url = f"beanstalk://127.0.0.1:{self.port}"
        self.start()

    def command(self) -> list[str]:
        return [BEANSTALKD, "-l", "127.0.0.1", "-p", str(self.port), "-b", str(self.binlog), "-z", "1048576"]


@pytest.mark.skipif(not Path(BEANSTALKD).exists(), reason="beanstalkd not installed (.ci/services.d/beanstalkd.sh)")
class TestBeanstalkdDurability(BrokerContract):
    """Only the restart test, against a private beanstalkd with its own binlog directory."""

    lease_seconds = 2.0
    recovery_seconds = 5.0
    only_tests = frozenset({"test_durable_across_service_restart"})

    @pytest.fixture
    def private(self, tmp_path: Path) -> Iterator[_PrivateBeanstalkd]:
        srv = _PrivateBeanstalkd(tmp_path)
        yield srv
        srv.stop()

    @pytest.fixture
    def restart_service(self, private: _PrivateBeanstalkd) -> Callable[[], None]:
        return private.restart

    @pytest.fixture
    def make_broker(self, private: _PrivateBeanstalkd) -> Iterator[Callable[[str], Broker]]:
        f = _Factory(private.url)
        yield f
        f.close_all()
