"""The publish path's own properties object packs to exactly the bytes paho's ``Properties`` would send."""

from __future__ import annotations

from boostkernel_mqtt.broker import _props, _user_props, default_receive_maximum

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
