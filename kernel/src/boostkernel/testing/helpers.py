"""Small helpers shared by the contract suite and tests."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

DEFAULT_URLS = {
    "redis": "redis://127.0.0.1:6379/15",
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672/%2F",
    "postgres": "postgresql://postgres@127.0.0.1:5432/test",
    "mysql": "mysql://root@127.0.0.1:3306/test",
    "mqtt": "mqtt://127.0.0.1:1883",
    "nats": "nats://127.0.0.1:4222",
    "kafka": "kafka://127.0.0.1:9092",
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


def doc_example_params(page: Path) -> list[Any]:
    """The ```python blocks of the Markdown ``page``, as pytest parameters (ids ``example-0``, …)."""
    import pytest

    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    return [pytest.param(code, id=f"example-{i}") for i, code in enumerate(blocks)]


def run_doc_example(code: str, tmp_path: Path, page: Path, timeout: float = 120.0) -> str:
    """Run one documentation example as a script in ``tmp_path`` (with its own data directory) and return
    what it printed; fail with the end of its stderr if it exits non-zero."""
    script = tmp_path / "example.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=timeout, cwd=tmp_path,
                         env={**os.environ, "BOOSTKERNEL_DATA_DIR": str(tmp_path / "data")})
    assert out.returncode == 0, f"{'/'.join(page.parts[-3:])} example failed:\n{out.stderr.decode()[-3000:]}"
    return out.stdout.decode()


def closing_brokers(factory: Callable[[str], Any], delete_queues: bool = False) -> Iterator[Callable[[str], Any]]:
    """The body of a ``make_broker`` fixture (``yield from closing_brokers(...)``): yields a factory that
    remembers each broker it makes; at teardown closes them all and, with ``delete_queues``, deletes the
    server's queues of the first one (through a broker's ``delete_queues()``)."""
    made: list[Any] = []

    def make(queue: str) -> Any:
        b = factory(queue)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()
    if made and delete_queues:
        cleaner = factory(made[0].queue)
        cleaner.delete_queues()
        cleaner.close()
