"""pytest plugin of boostkernel (load with ``-p boostkernel.testing.plugin``).

* ``@pytest.mark.service("redis")``: the test needs that service. If it is unreachable the test is
  skipped locally and **fails when the ``CI`` environment variable is set**. The service's URL is
  ``BOOSTKERNEL_<NAME>_URL`` or the kernel's default for the services it knows (redis, rabbitmq,
  postgres, mysql, mqtt, nats, kafka, stomp, beanstalkd); for any other name the variable is required (with a port), and
  a test marked with an unknown name and no URL **fails** saying so, instead of skipping.
* fixtures: ``unique_queue`` (a fresh queue name per test), ``service_url`` (URL of a named service),
  ``fresh_plugins`` (a clean process-wide plugin manager for the test).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest

from .helpers import DEFAULT_URLS, service_reachable
from .helpers import service_url as _service_url


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "service(name): needs a running service")
    config.addinivalue_line("markers", "serial: bounded in time (kill loops, recovery bounds): run it alone, "
                                       "not beside other tests (`pytest -m serial` after `pytest -n N -m 'not serial'`)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("service"):
        name = mark.args[0]
        var = f"BOOSTKERNEL_{name.upper()}_URL"
        if name not in DEFAULT_URLS and not os.environ.get(var):
            pytest.fail(f"service {name!r} is not one the kernel knows: set {var} to its URL "
                        f"(with host and port), e.g. {var}={name}://127.0.0.1:PORT", pytrace=False)
        if not service_reachable(name):
            msg = f"service {name!r} is not reachable at {_service_url(name)}"
            if os.environ.get("CI"):
                pytest.fail(msg + " (CI is set: service tests must run)", pytrace=False)
            pytest.skip(msg)


@pytest.fixture
def unique_queue(request: pytest.FixtureRequest) -> str:
    base = "".join(ch if ch.isalnum() else "_" for ch in request.node.name)[:60]
    return f"t_{base}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def service_url() -> Callable[[str], str]:
    return _service_url


@pytest.fixture
def fresh_plugins() -> Iterator[None]:
    from ..plugins import reset_plugins

    reset_plugins(None)
    yield
    reset_plugins(None)
