"""boostkernel.signing: HMAC-SHA256 tags, rotation, the key rule; boostkernel.edge's address helpers."""

from __future__ import annotations

import pytest

from boostkernel.edge import is_loopback, parse_address
from boostkernel.errors import ConfigError
from boostkernel.signing import TAG_BYTES, Signer, keys_from, secret_env_names


def test_seal_open_roundtrip_and_tamper() -> None:
    s = Signer(["k1"])
    sealed = s.seal(b"id\nbody")
    assert len(sealed) == TAG_BYTES + len(b"id\nbody")
    assert s.open(sealed) == b"id\nbody"
    for i in (0, TAG_BYTES - 1, TAG_BYTES, len(sealed) - 1):  # a flipped bit in the tag or the data
        bad = bytearray(sealed)
        bad[i] ^= 1
        assert s.open(bytes(bad)) is None
    assert s.open(sealed[:TAG_BYTES - 1]) is None
    assert Signer(["other"]).open(sealed) is None


def test_tags_are_standard_hmac_sha256() -> None:
    import hmac

    for key in (b"k", b"x" * 64, b"y" * 65, b"z" * 200, "clé".encode()):
        for data in (b"", b"a", b"id\n\n{}" * 50):
            assert Signer([key]).sign(data) == hmac.digest(key, data, "sha256")
    assert Signer(["clé"]).sign(b"a") == hmac.digest("clé".encode(), b"a", "sha256")


def test_rotation_signs_with_first_accepts_all() -> None:
    old, both, new = Signer(["old"]), Signer(["new", "old"]), Signer(["new"])
    assert both.open(old.seal(b"x")) == b"x"
    assert both.open(new.seal(b"x")) == b"x"
    assert new.open(both.seal(b"x")) == b"x"
    assert old.open(both.seal(b"x")) is None
    assert both.sign(b"x") == new.sign(b"x")


def test_no_key_refused_and_repr_hides_keys() -> None:
    with pytest.raises(ValueError):
        Signer([])
    with pytest.raises(ValueError):
        Signer([""])
    assert "topsecret" not in repr(Signer(["topsecret"]))


def test_keys_from_option_then_env() -> None:
    assert secret_env_names("my-broker") == ("BOOSTKERNEL_MY_BROKER_SECRET", "BOOSTKERNEL_SECRET")
    assert keys_from("tcp", {"secret": "a, b"}, {"BOOSTKERNEL_TCP_SECRET": "env"}) == ["a", "b"]
    assert keys_from("tcp", {"secret": ["a", "b"]}, {}) == ["a", "b"]
    assert keys_from("tcp", {}, {"BOOSTKERNEL_TCP_SECRET": "env", "BOOSTKERNEL_SECRET": "shared"}) == ["env"]
    assert keys_from("tcp", {}, {"BOOSTKERNEL_SECRET": "shared"}) == ["shared"]
    assert keys_from("tcp", {}, {}) == []


def test_loopback_and_addresses() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.1.2.3") and is_loopback("::1")
    assert is_loopback("[::1]") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("10.0.0.1")
    assert not is_loopback("example.com")
    assert parse_address("tcp://127.0.0.1:7001", 1) == [("127.0.0.1", 7001)]
    assert parse_address("tcp://[::1]:7001", 1) == [("::1", 7001)]
    assert parse_address("zmq://a:1,b:2", 9) == [("a", 1), ("b", 2)]
    assert parse_address("tcp://host", 9) == [("host", 9)]
    with pytest.raises(ConfigError, match="names no host"):
        parse_address("tcp://", 1)
    with pytest.raises(ConfigError, match="not a number"):
        parse_address("tcp://h:x", 1)
