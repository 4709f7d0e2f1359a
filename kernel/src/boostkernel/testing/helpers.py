"""Small helpers shared by the contract suite and tests."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlparse

F = TypeVar("F", bound=Callable[..., Any])


def requires(*capabilities: str) -> Callable[[F], F]:
    """Mark a contract test as needing these capabilities of the plugin under test."""

    def mark(fn: F) -> F:
        fn._requires = capabilities  # type: ignore[attr-defined]
        return fn

    return mark

DEFAULT_URLS = {
    "redis": "redis://127.0.0.1:6379/15",
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672/%2F",
    "postgres": "postgresql://postgres@127.0.0.1:5432/test",
    "mysql": "mysql://root@127.0.0.1:3306/test",
    "mqtt": "mqtt://127.0.0.1:1883",
    "nats": "nats://127.0.0.1:4222",
    "kafka": "kafka://127.0.0.1:9092",
    "sqs": "sqs+http://127.0.0.1:9324",
    "beanstalkd": "beanstalk://127.0.0.1:11300",
    "stomp": "stomp://127.0.0.1:61613",
    "ssh": "ssh://127.0.0.1:2222",  # the private sshd of .ci/services.d/openssh.sh (boostkernel-deploy's tests)
}


def service_url(name: str) -> str:
    """``BOOSTKERNEL_<NAME>_URL`` or the local default for the service."""
    return os.environ.get(f"BOOSTKERNEL_{name.upper()}_URL") or DEFAULT_URLS.get(name, f"{name}://127.0.0.1")


def service_reachable(name: str, timeout: float = 1.0) -> bool:
    url = urlparse(service_url(name))
    host, port = url.hostname or "127.0.0.1", url.port
    if port is None:
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(cond: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02) -> bool:
    """Poll ``cond`` until it is true or ``timeout`` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(interval)
    return bool(cond())


def drop_tcp_connections(port: int, host: str = "127.0.0.1") -> int:
    """Cut every TCP connection of this process to ``host:port`` (``shutdown`` under the client's feet).

    The server sees the connection close and the client's next read or write fails, as when a network
    link or the server drops it. A ready-made ``cut_connection`` for brokers whose client library uses
    Python sockets (pika, kafka-python, redis-py …); returns how many connections were cut.
    """
    import gc

    cut = 0
    for obj in gc.get_objects():
        if not isinstance(obj, socket.socket) or obj.fileno() < 0:
            continue
        try:
            peer = obj.getpeername()
        except OSError:
            continue
        if isinstance(peer, tuple) and peer[1] == port and peer[0] in (host, "::ffff:" + host):
            try:
                obj.shutdown(socket.SHUT_RDWR)
                cut += 1
            except OSError:
                pass
    return cut


class BrokerFactory:
    """A ready-made value for a contract's ``make_broker`` fixture: ``factory(queue)`` returns
    ``broker_class(queue, url, **options)`` and keeps it in ``made``; ``close_all()`` closes them::

        @pytest.fixture
        def make_broker(self) -> Iterator[Callable[[str], Broker]]:
            f = BrokerFactory(MyBroker, service_url("mybroker"), lease=1.0)
            yield f
            f.close_all()
    """

    def __init__(self, broker_class: Callable[..., Any], url: str, **options: Any) -> None:
        self.broker_class, self.url, self.options = broker_class, url, options
        self.made: list[Any] = []

    def __call__(self, queue: str) -> Any:
        b = self.broker_class(queue, self.url, **self.options)
        self.made.append(b)
        return b

    def close_all(self) -> None:
        for b in self.made:
            b.close()


class BoosterFactory:
    """A ready-made ``make_booster`` for tests: ``factory(fn, queue=None, **params)`` decorates ``fn`` with
    ``@boost`` (``defaults`` first, then ``params``) on ``queue`` or a fresh ``<prefix>_<random>`` queue;
    ``close_all()`` stops each booster, forgets it and purges its queue::

        @pytest.fixture
        def make_booster(self) -> Iterator[BoosterFactory]:
            f = BoosterFactory("mytest", broker="sqlite", results=True)
            yield f
            f.close_all()
    """

    def __init__(self, prefix: str, **defaults: Any) -> None:
        self.prefix, self.defaults = prefix, defaults
        self.made: list[Any] = []

    def __call__(self, fn: Callable[..., Any], queue: str | None = None, **params: Any) -> Any:
        from .. import boost

        q = queue or f"{self.prefix}_{uuid.uuid4().hex[:10]}"
        fn.__qualname__ = f"{fn.__qualname__}_{q}"  # one function per queue in the registry of methods
        b = boost(q, **{**self.defaults, **params})(fn)
        self.made.append(b)
        return b

    def close_all(self) -> None:
        from ..registry import REGISTRY

        for b in self.made:
            try:
                b.stop(timeout=10)
            finally:
                REGISTRY.pop(b.queue, None)
                try:
                    b.purge()
                    b.broker.close()
                except Exception:  # noqa: BLE001 - cleanup only
                    pass


def cut_connections_to(url: str) -> Callable[[Any], None]:
    """A ready-made ``cut_connection`` for a broker on Python sockets: cuts every connection of this process
    to the port of ``url`` (:func:`drop_tcp_connections`) and fails the test if there was none."""
    port = int(url.rsplit(":", 1)[1].split("/")[0])

    def cut(broker: Any) -> None:
        if not drop_tcp_connections(port):
            import pytest

            pytest.fail("no connection to cut")

    return cut


def bytes_held_per_message(broker: Any, queue: str, n: int = 10_000) -> float:
    """Publish ``n`` no-op messages for ``queue`` on ``broker`` and return the Python memory (``tracemalloc``)
    still held afterwards per message: what a queued or buffered message costs the publishing process
    (a client's oversized encoder buffer kept alive with each message shows up here)."""
    import gc
    import tracemalloc

    from ..broker import Outgoing
    from ..message import Envelope

    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(n):
            env = Envelope(queue, [i], {})
            broker.publish(Outgoing(env.id, env.encode()))
        del env
        gc.collect()
        return (tracemalloc.get_traced_memory()[0] - base) / n
    finally:
        tracemalloc.stop()


def import_module_file(folder: Any, name: str, source: str | None = None) -> Any:
    """Import the module ``name`` from ``folder`` (first on ``sys.path`` for this import only) and return it;
    with ``source``, write it first (dedented) as ``folder/name.py``. For the task module a test writes and
    whose boosters it uses in-process, while its worker processes import the same file by name."""
    import importlib
    import sys
    import textwrap

    if source is not None:
        with open(os.path.join(folder, f"{name}.py"), "w") as fh:
            fh.write(textwrap.dedent(source))
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(folder))
