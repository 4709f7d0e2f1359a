"""Small helpers shared by the contract suite and tests."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
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
