"""What can be tested honestly without a RocketMQ server: options, names, registration, lazy import, the
message mapping on the real client's Message class, honest capabilities."""

from __future__ import annotations

import subprocess
import sys

import pytest

from boostkernel.errors import ConfigError


def test_plugin_module_does_not_import_the_client() -> None:
    code = ("import sys, boostkernel_rocketmq.plugin; "
            "assert 'rocketmq' not in sys.modules and 'grpc' not in sys.modules, 'client imported at listing time'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_registered_and_loaded() -> None:
    from boostkernel.plugins import Plugins

    ps = Plugins()
    assert ps.statuses["rocketmq"].status == "loaded", ps.statuses["rocketmq"].error
    assert ps.get("broker", "rocketmq").factory == "boostkernel_rocketmq.broker:RocketmqBroker"


def test_defaults_and_endpoints() -> None:
    from boostkernel_rocketmq._common import parse

    s = parse("rocketmq://ak:sk@10.0.0.1:8081,10.0.0.2:8081", "orders", {})
    assert (s.endpoints, s.topic, s.group, s.dlq_topic) == ("10.0.0.1:8081;10.0.0.2:8081", "orders", "boostkernel",
                                                          "%DLQ%boostkernel")
    assert (s.access_key, s.secret_key, s.tls) == ("ak", "sk", False)
    assert s.heartbeat_interval == pytest.approx(10 / 3)


@pytest.mark.parametrize(("url", "queue", "opts", "match"), [
    ("redis://h", "q", {}, "rocketmq://"),
    ("rocketmq://host", "q", {}, "HOST:PORT"),
    ("rocketmq://h:8081", "bad name", {}, "topic"),
    ("rocketmq://h:8081", "q", {"group": "a b"}, "group"),
    ("rocketmq://h:8081", "q", {"invisible_duration": 0.5}, "invisible_duration"),
    ("rocketmq://h:8081", "q", {"invisible_duration": 10, "heartbeat_interval": 6}, "heartbeat_interval"),
])
def test_bad_configuration_fails_with_the_fix(url: str, queue: str, opts: dict[str, object], match: str) -> None:
    from boostkernel_rocketmq._common import parse

    with pytest.raises(ConfigError, match=match):
        parse(url, queue, opts)


def test_capabilities_message_mapping_and_masking() -> None:
    from boostkernel_rocketmq.broker import RocketmqBroker

    b = RocketmqBroker("orders", "rocketmq://ak:s3cret@127.0.0.1:8081")
    assert not b.capabilities.count and not b.capabilities.purge and not b.capabilities.delay
    assert "s3cret" not in str(b.describe())
    m = b._message("orders", b'{"x":1}', {"bk-id": "id-1"})  # noqa: SLF001 - the real client's Message
    assert (m.topic, m.body, m.properties["bk-id"]) == ("orders", b'{"x":1}', "id-1")
    assert b._key(m) == "id-1"  # noqa: SLF001
    b.close()
