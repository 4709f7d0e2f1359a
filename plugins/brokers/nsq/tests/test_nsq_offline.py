"""What can be tested honestly without an nsqd: options, names, the body framing, the /stats parsing,
registration, lazy import, and the real ansq client failing fast against a port nobody listens on."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from boostkernel.errors import BrokerUnavailable, ConfigError


def test_plugin_module_does_not_import_ansq() -> None:
    code = "import sys, boostkernel_nsq.plugin; assert 'ansq' not in sys.modules, 'ansq imported at listing time'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_registered_and_loaded() -> None:
    from boostkernel.plugins import Plugins

    ps = Plugins()
    assert ps.statuses["nsq"].status == "loaded", ps.statuses["nsq"].error
    assert ps.get("broker", "nsq").factory == "boostkernel_nsq.broker:NsqBroker"


def test_defaults() -> None:
    from boostkernel_nsq._common import parse

    s = parse("nsq://10.0.0.5", "emails", {})
    assert (s.host, s.port, s.http_port, s.topic, s.channel, s.dlq_topic) == \
        ("10.0.0.5", 4150, 4151, "emails", "boostkernel", "emails.dlq")
    assert s.touch_interval == pytest.approx(20.0)


@pytest.mark.parametrize(("url", "queue", "opts", "match"), [
    ("redis://h", "q", {}, "nsq://"),
    ("nsq://", "q", {}, "no host"),
    ("nsq://h", "bad name", {}, "topic name"),
    ("nsq://h", "q", {"channel": "a/b"}, "channel name"),
    ("nsq://h", "q", {"msg_timeout": 0.5}, "msg_timeout"),
    ("nsq://h", "q", {"msg_timeout": 10, "touch_interval": 6}, "touch_interval"),
    ("nsq://h", "q", {"max_in_flight": 0}, "max_in_flight"),
])
def test_bad_configuration_fails_with_the_fix(url: str, queue: str, opts: dict[str, object], match: str) -> None:
    from boostkernel_nsq._common import parse

    with pytest.raises(ConfigError, match=match):
        parse(url, queue, opts)


def test_framing_round_trip_and_foreign_bodies() -> None:
    from boostkernel_nsq._common import frame, unframe

    assert unframe(frame("id-1", b'{"a":1}'), "nsqid") == ("id-1", b'{"a":1}', 0)
    assert unframe(frame("id-2", b"x\ny", crashes=2), "nsqid") == ("id-2", b"x\ny", 2)
    assert unframe(b'{"plain":true}', "nsqid") == ("nsqid", b'{"plain":true}', 0)


def test_dead_record_round_trip() -> None:
    from boostkernel_nsq._common import dead_record, read_dead_record

    assert read_dead_record(dead_record("m", b"\x00\xff", "why", 12.5)) == ("m", b"\x00\xff", "why", 12.5)


def test_channel_depth_from_stats() -> None:
    from boostkernel_nsq.broker import channel_depth

    stats = {"topics": [{"topic_name": "q", "depth": 7, "channels": [
        {"channel_name": "boostkernel", "depth": 3, "deferred_count": 2, "in_flight_count": 9}]}]}
    assert channel_depth(stats, "q", "boostkernel") == 5  # in-flight messages are not counted
    assert channel_depth(stats, "q", "other") == 7
    assert channel_depth(stats, "nope", "boostkernel") == 0


def test_unreachable_server_raises_broker_unavailable() -> None:
    from boostkernel_nsq.broker import NsqBroker

    from boostkernel.broker import Outgoing

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    b = NsqBroker("q", f"nsq://127.0.0.1:{port}", connect_timeout=1)
    try:
        with pytest.raises(BrokerUnavailable):
            b.publish(Outgoing("id-1", b"{}"))
        with pytest.raises(BrokerUnavailable):
            b.fetch(1, 0.1)
    finally:
        b.close()


def test_purge_is_not_declared_and_refused() -> None:
    """nsqd's /channel/empty drops in-flight and deferred messages too: purge is not offered (see docs/brokers/nsq.md)."""
    from boostkernel_nsq.broker import NsqBroker

    assert not NsqBroker.capabilities.purge
    with pytest.raises(NotImplementedError, match="cannot purge"):
        NsqBroker("q_purge").purge()
