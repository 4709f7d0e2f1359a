from __future__ import annotations

import re

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from boostkernel.errors import MessageDecodeError
from boostkernel.message import Envelope, decode, uuid7

UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_uuid7_format_and_order() -> None:
    ids = [uuid7() for _ in range(5000)]
    assert all(UUID7.match(i) for i in ids)
    assert ids == sorted(ids), "ids made in one process are time-ordered"
    assert len(set(ids)) == len(ids)


def test_envelope_roundtrip() -> None:
    env = Envelope("q", [1, "a"], {"x": {"y": [1.5, None]}}, options={"priority": 3}, headers={"trace": "t"})
    back = decode(env.encode(), "q")
    assert (back.id, back.args, back.kwargs, back.options, back.headers) == (
        env.id, [1, "a"], {"x": {"y": [1.5, None]}}, {"priority": 3}, {"trace": "t"})
    assert back.priority == 3


def test_plain_json_object_is_kwargs() -> None:
    env = decode(b'{"x": 1, "y": 2}', "q")
    assert env.args == [] and env.kwargs == {"x": 1, "y": 2}
    assert UUID7.match(env.id)


@pytest.mark.parametrize("body,reason", [
    (b"\xff\xfe not json", "not valid JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (b"null", "expected a JSON object"),
    (b'{"v": 99}', "unsupported wire version"),
    (b'{"v": 1, "args": {"a": 1}}', "'args' must be a list"),
    (b'{"v": 1, "id": 5}', "'id' must be a string"),
    (b'{"x": NaN}', "not valid JSON"),
    (b'{"v": 1, "attempt": "x"}', "'attempt' must be an integer"),
])
def test_malformed_bodies_raise_decode_error_with_reason(body: bytes, reason: str) -> None:
    with pytest.raises(MessageDecodeError, match=reason):
        decode(body, "q")


def test_deep_nesting_and_oversize_are_rejected() -> None:
    with pytest.raises(MessageDecodeError):
        decode(b"[" * 100_000 + b"]" * 100_000, "q")
    with pytest.raises(MessageDecodeError, match="exceeds"):
        decode(b'{"x": "' + b"a" * (2 << 20) + b'"}', "q")


def test_pickle_payload_is_never_unpickled() -> None:
    import pickle

    with pytest.raises(MessageDecodeError):
        decode(pickle.dumps({"x": 1}), "q")


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=300))
def test_decode_of_any_bytes_returns_envelope_or_decode_error(data: bytes) -> None:
    try:
        env = decode(data, "q")
    except MessageDecodeError:
        return
    assert isinstance(env, Envelope)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=1000, deadline=None)
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=5))
def test_decode_of_any_json_object(obj: dict[str, object]) -> None:
    try:
        env = decode(orjson.dumps(obj), "q")
    except MessageDecodeError:
        return
    assert isinstance(env.args, list) and isinstance(env.kwargs, dict)


def test_non_json_arguments_fail_at_encode_with_advice() -> None:
    with pytest.raises(TypeError, match="JSON-serialisable"):
        Envelope("q", [object()]).encode()
