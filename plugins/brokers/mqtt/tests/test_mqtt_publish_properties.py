"""The publish path's own properties object packs to exactly the bytes paho's ``Properties`` would send."""

from __future__ import annotations

from typing import Any

import pytest
from boostkernel_mqtt.broker import _client_class, _props, _user_props, default_receive_maximum

from boostkernel.params import BoostParams


def test_user_properties_pack_like_paho() -> None:
    pairs = [("bk-id", "0f3c-é"), ("bk-deliveries", "2"), ("bk-crashes", "")]
    ours = _user_props(pairs)
    assert ours.pack() == _props("PUBLISH", UserProperty=pairs).pack()
    assert ours.UserProperty == pairs
    assert "bk-deliveries" in str(ours)  # prints like paho's (its debug log does)


def test_receive_maximum_defaults_cover_a_batch_of_acks() -> None:
    assert default_receive_maximum(None) == 100
    assert default_receive_maximum(BoostParams(queue="q", workers=1)) == 100
    assert default_receive_maximum(BoostParams(queue="q", workers=80)) == 80 + 160
    assert default_receive_maximum(BoostParams(queue="q", workers=1, prefetch=7)) == 7


def _publish_packet(topic: str, payload: bytes, props: Any, mid: int, dup: bool, retain: bool) -> tuple[int, bytearray]:
    t = topic.encode()
    body = len(t).to_bytes(2, "big") + t + mid.to_bytes(2, "big") + props.pack() + payload
    return 0x32 | (0x08 if dup else 0) | (0x01 if retain else 0), bytearray(body)


def test_received_publish_decodes_like_paho() -> None:
    """The consumer's own PUBLISH decoding (QoS 1, manual acks) gives the message paho's decoder gives:
    user properties only (the fast path), none, and another property beside them (paho's path)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt import _packet
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    other = _props("PUBLISH", MessageExpiryInterval=5, UserProperty=[("a", "b")])
    cases = [("boostkernel/q", b'{"x":1}', _user_props([("bk-id", "0f3c-é"), ("bk-deliveries", "2")]), 7, False, False),
             ("t/é", b"", _props("PUBLISH"), 65535, True, True),
             ("t", b"p" * 70000, _user_props([("k" * 200, "v" * 300)]), 1, False, False),
             ("t2", b"zz", other, 2, False, False)]
    got: list[Any] = []
    client = _client_class()(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.manual_ack_set(True)
    client.on_message = lambda c, u, m: got.append(m)
    for case in cases:
        header, body = _publish_packet(*case)
        client._in_packet = {"command": header, "packet": body}
        got.clear()
        client._handle_publish()
        ref = _packet.decode_publish(header, body, MQTTProtocolVersion.MQTTv5)
        (m,) = got
        assert (m.mid, m.topic, m.payload, m.dup, m.retain, m.qos) == (
            ref.mid, ref.topic.decode(), ref.payload, ref.dup, ref.retain, ref.qos)
        assert str(m.properties) == str(ref.properties)
        assert getattr(m.properties, "UserProperty", None) == getattr(ref.properties, "UserProperty", None)
    from paho.mqtt.exception import MalformedPacket

    header, body = _publish_packet(*cases[0])
    client._in_packet = {"command": header, "packet": body[:20]}  # cut inside the properties
    with pytest.raises(MalformedPacket):
        client._handle_publish()
