"""The kernel's broker contract against the real NATS JetStream (127.0.0.1:4222), and the durability test
against a private nats-server (its own port and store directory) that the test restarts."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from boostkernel_nats.broker import NatsBroker

from boostkernel.broker import Broker
from boostkernel.testing import BrokerContract
from boostkernel.testing.helpers import drop_tcp_connections, service_url
from boostkernel.testing.private import _wait_port, free_port

pytestmark = pytest.mark.service("nats")

#: ack_wait 2 s, in-progress every 0.4 s: a killed consumer's messages come back after about 2 s.
FAST = {"lease": 2.0, "heartbeat_interval": 0.4}
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


class _Factory:
    def __init__(self, url: str) -> None:
        self.url = url
        self.made: list[NatsBroker] = []

    def __call__(self, queue: str) -> Broker:
        b = NatsBroker(queue, self.url, **FAST)
        self.made.append(b)
        return b

    def cleanup(self) -> None:
        for b in self.made:
            b.close()
        if self.made:
            cleaner = NatsBroker(self.made[0].queue, self.url)
            try:
                cleaner.delete_streams()
            finally:
                cleaner.close()


class TestNatsContract(BrokerContract):
    lease_seconds = 2.0
    recovery_seconds = 8.0  # ack_wait 2 s, then the next fetch
    only_tests = None
    expected_failures = {
        "test_durable_across_service_restart": "runs in TestNatsDurability against a private nats-server",
    }

    @pytest.fixture
    def cut_connection(self) -> Callable[[Broker], None]:
        port = _port(service_url("nats"))
        return lambda broker: None if drop_tcp_connections(port) else pytest.fail("no connection to cut")

    @pytest.fixture
    def make_broker(self) -> Iterator[Callable[[str], Broker]]:
        f = _Factory(service_url("nats"))
        yield f
        f.cleanup()


class _PrivateNats:
    def __init__(self, base: Path) -> None:
        self.port = free_port()
        self.store = base / "jetstream"
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd",
                                      str(self.store)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
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


@pytest.mark.skipif(not Path(NATS_SERVER).exists(), reason="nats-server binary not installed")
class TestNatsDurability(BrokerContract):
    """Only the restart test, against a private nats-server with its own store directory."""

    lease_seconds = 2.0
    recovery_seconds = 8.0
    only_tests = frozenset({"test_durable_across_service_restart"})

    @pytest.fixture
    def private(self, tmp_path: Path) -> Iterator[_PrivateNats]:
        srv = _PrivateNats(tmp_path)
        yield srv
        srv.stop()

    @pytest.fixture
    def restart_service(self, private: _PrivateNats) -> Callable[[], None]:
        return private.restart

    @pytest.fixture
    def make_broker(self, private: _PrivateNats) -> Iterator[Callable[[str], Broker]]:
        f = _Factory(private.url)
        yield f
        for b in f.made:
            b.close()
