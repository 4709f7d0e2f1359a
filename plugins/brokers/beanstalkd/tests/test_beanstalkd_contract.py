"""The kernel's broker contract against the real beanstalkd (127.0.0.1:11300, started by
.ci/services.d/beanstalkd.sh), and the durability test against a private beanstalkd (its own port and
binlog directory) that the test restarts."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from boostkernel_beanstalkd.broker import BeanstalkdBroker

from boostkernel.broker import Broker
from boostkernel.testing import BrokerContract
from boostkernel.testing.helpers import drop_tcp_connections, service_url
from boostkernel.testing.private import _wait_port, free_port

pytestmark = pytest.mark.service("beanstalkd")

#: TTR 2 s, touched every 0.4 s (a killed consumer's jobs come back at once: its socket closes).
FAST = {"ttr": 2, "heartbeat_interval": 0.4}
BEANSTALKD = shutil.which("beanstalkd") or "/usr/bin/beanstalkd"


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


class _Factory:
    def __init__(self, url: str) -> None:
        self.url = url
        self.made: list[BeanstalkdBroker] = []

    def __call__(self, queue: str) -> Broker:
        b = BeanstalkdBroker(queue, self.url, **FAST)
        self.made.append(b)
        return b

    def cleanup(self) -> None:
        for b in self.made:
            b.close()
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
        port = _port(service_url("beanstalkd"))
        return lambda broker: None if drop_tcp_connections(port) else pytest.fail("no connection to cut")

    @pytest.fixture
    def make_broker(self) -> Iterator[Callable[[str], Broker]]:
        f = _Factory(service_url("beanstalkd"))
        yield f
        f.cleanup()


class _PrivateBeanstalkd:
    def __init__(self, base: Path) -> None:
        self.port = free_port()
        self.binlog = base / "binlog"
        self.binlog.mkdir(parents=True, exist_ok=True)
        self.url = f"beanstalk://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([BEANSTALKD, "-l", "127.0.0.1", "-p", str(self.port), "-b", str(self.binlog),
                                      "-z", "1048576"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        _wait_port(self.port, 30, self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()


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
        for b in f.made:
            b.close()
