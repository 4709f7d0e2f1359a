"""What can be tested honestly without a Pulsar server: options, topic names, registration, lazy import,
and the real pulsar-client failing fast against a port nobody listens on."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from boostkernel.errors import BrokerUnavailable, ConfigError


def test_plugin_module_does_not_import_pulsar_client() -> None:
    code = ("import sys, boostkernel_pulsar.plugin; "
            "assert 'pulsar' not in sys.modules and '_pulsar' not in sys.modules, 'pulsar imported at listing time'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_registered_and_loaded() -> None:
    from boostkernel.plugins import Plugins

    ps = Plugins()
    assert ps.statuses["pulsar"].status == "loaded", ps.statuses["pulsar"].error
    reg = ps.get("broker", "pulsar")
    assert reg.factory == "boostkernel_pulsar.broker:PulsarBroker"
    assert set(reg.schemes) == {"pulsar", "pulsar+ssl"}


@pytest.mark.parametrize(("queue", "opts", "topic"), [
    ("emails", {}, "persistent://public/default/emails"),
    ("emails", {"tenant": "acme", "namespace": "jobs"}, "persistent://acme/jobs/emails"),
    ("persistent://t/n/x", {}, "persistent://t/n/x"),
])
def test_topic_names(queue: str, opts: dict[str, str], topic: str) -> None:
    from boostkernel_pulsar._common import parse

    s = parse("pulsar://h:6650", queue, opts, 3)
    assert s.topic == topic
    assert s.dlq_topic == topic + "-boostkernel-DLQ"
    assert s.service_url == "pulsar://h:6650"


@pytest.mark.parametrize(("url", "opts", "match"), [
    ("redis://h", {}, "pulsar://"),
    ("pulsar://", {}, "no host"),
    ("pulsar://h", {"receiver_queue_size": 0}, "receiver_queue_size"),
    ("pulsar://h", {"negative_ack_delay": -1}, "negative_ack_delay"),
    ("pulsar://h", {"topic": "a/b"}, "Pulsar topic"),
    ("pulsar://h", {"topic": "persistent://only/two"}, "not valid"),
])
def test_bad_configuration_fails_with_the_fix(url: str, opts: dict[str, object], match: str) -> None:
    from boostkernel_pulsar._common import parse

    with pytest.raises(ConfigError, match=match):
        parse(url, "q", opts, 3)


def test_max_deliveries_must_be_positive() -> None:
    from boostkernel_pulsar._common import parse

    with pytest.raises(ConfigError, match="max_deliveries"):
        parse("pulsar://h", "q", {}, 0)


def test_capabilities_are_honest_and_describe_masks() -> None:
    from boostkernel_pulsar.broker import PulsarBroker

    b = PulsarBroker("q", "pulsar://user:s3cret@127.0.0.1:6650")
    assert not b.capabilities.count and not b.capabilities.purge and not b.capabilities.priority
    assert b.capabilities.ack and b.capabilities.delay
    assert "s3cret" not in str(b.describe())
    b.close()


def test_envelope_mapping_of_a_delivery() -> None:
    """The mapping from a received message to a Delivery, on a real pulsar-client Message built locally."""
    import pulsar
    from boostkernel_pulsar.broker import PulsarBroker

    class Msg:  # the three accessors the broker reads, with pulsar's types
        def properties(self) -> dict[str, str]:
            return {"bk-id": "abc", "bk-requeues": "2"}

        def data(self) -> bytes:
            return b'{"x":1}'

        def redelivery_count(self) -> int:
            return 1

        def message_id(self) -> object:
            return pulsar.MessageId.earliest

    b = PulsarBroker("q", "pulsar://127.0.0.1:6650")
    d = b._delivery(Msg())  # noqa: SLF001
    assert (d.id, d.body, d.delivery_count) == ("abc", b'{"x":1}', 4)
    b.close()


def test_unreachable_server_raises_broker_unavailable() -> None:
    from boostkernel_pulsar.broker import PulsarBroker

    from boostkernel.broker import Outgoing

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    b = PulsarBroker("q", f"pulsar://127.0.0.1:{port}", operation_timeout=2, connect_timeout=1)
    with pytest.raises(BrokerUnavailable):
        b.publish(Outgoing("id-1", b"{}"))
    b.close()
