"""The message envelope (wire format v1) and its JSON codec.

On the wire a message is one JSON object::

    {"v": 1, "id": "<uuid7>", "queue": "q", "args": [...], "kwargs": {...},
     "published_at": 1700000000.123, "attempt": 0, "options": {...}, "headers": {...}}

``options`` holds per-message settings (eta, expires, priority, max_retries, timeout, dedup key …) and is
omitted when empty; ``headers`` carries trace context and user extras. A plain JSON object without ``"v"``
is accepted as keyword arguments, so foreign producers can feed a queue. Nothing here ever unpickles or
imports a name taken from a message.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import orjson

from .errors import MessageDecodeError

WIRE_VERSION = 1
#: Bodies larger than this are rejected at publish and dead-lettered at consume (resource exhaustion guard).
MAX_MESSAGE_BYTES = int(os.environ.get("BOOSTKERNEL_MAX_MESSAGE_BYTES", str(1 << 20)))

_last_ms = 0
_seq = 0
_rand = b""
_rand_pos = 0
_uuid_lock = threading.Lock()


def uuid7() -> str:
    """A time-ordered UUID version 7 as a string (RFC 9562), monotonic within the process.

    Thread-safe. The random bits come from ``os.urandom`` read 4 KiB at a time (one system call per 400
    ids instead of two per id: under load that system call dominated ``push()``).
    """
    global _last_ms, _seq, _rand, _rand_pos
    with _uuid_lock:
        ms = time.time_ns() // 1_000_000
        if _rand_pos + 10 > len(_rand):
            _rand, _rand_pos = os.urandom(4000), 0
        pos = _rand_pos
        _rand_pos += 10
        if ms <= _last_ms:
            ms = _last_ms
            _seq += 1
            if _seq > 0xFFF:  # sequence exhausted in this millisecond: borrow the next one
                ms += 1
                _seq = 0
        else:
            _seq = int.from_bytes(_rand[pos + 8:pos + 10], "big") & 0x3FF
        _last_ms = ms
        value = (ms << 80) | (0x7 << 76) | (_seq << 64) | (0b10 << 62) | \
            (int.from_bytes(_rand[pos:pos + 8], "big") & 0x3FFFFFFFFFFFFFFF)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Envelope:
    """One task message. Plain attributes (``__slots__``) because it sits on the per-message path."""

    __slots__ = ("id", "queue", "args", "kwargs", "published_at", "attempt", "options", "headers")

    def __init__(
        self,
        queue: str,
        args: list[Any] | tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        id: str | None = None,  # noqa: A002 - the wire name
        published_at: float | None = None,
        attempt: int = 0,
        options: dict[str, Any] | None = None,
        headers: dict[str, Any] | None = None,
    ) -> None:
        self.id = id or uuid7()
        self.queue = queue
        self.args = list(args) if not isinstance(args, list) else args
        self.kwargs = kwargs if kwargs is not None else {}
        self.published_at = published_at if published_at is not None else time.time()
        self.attempt = attempt
        self.options = options if options is not None else {}
        self.headers = headers if headers is not None else {}

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "v": WIRE_VERSION, "id": self.id, "queue": self.queue, "args": self.args, "kwargs": self.kwargs,
            "published_at": self.published_at, "attempt": self.attempt,
        }
        if self.options:
            d["options"] = self.options
        if self.headers:
            d["headers"] = self.headers
        return d

    def encode(self) -> bytes:
        try:
            return orjson.dumps(self.to_dict())
        except TypeError as exc:
            raise TypeError(
                f"task arguments for queue {self.queue!r} must be JSON-serialisable: {exc}. "
                "Pass plain data (str, int, float, bool, None, list, dict) and rebuild objects inside the task."
            ) from None

    @property
    def eta(self) -> float | None:
        v = self.options.get("eta")
        return float(v) if v is not None else None

    @property
    def priority(self) -> int:
        return int(self.options.get("priority", 0))

    def __repr__(self) -> str:
        return f"Envelope(id={self.id!r}, queue={self.queue!r}, attempt={self.attempt})"


def decode(body: bytes | str, queue: str) -> Envelope:
    """Decode bytes from a broker into an :class:`Envelope`, or raise :class:`MessageDecodeError`.

    Never raises anything else, whatever the input.
    """
    if len(body) > MAX_MESSAGE_BYTES:
        raise MessageDecodeError(f"message of {len(body)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    try:
        data = orjson.loads(body)
    except (orjson.JSONDecodeError, TypeError, ValueError, RecursionError) as exc:
        raise MessageDecodeError(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MessageDecodeError(f"expected a JSON object, got {type(data).__name__}")
    if "v" not in data:  # a foreign producer's plain object: its keys are the keyword arguments
        return Envelope(queue, (), data)
    if data["v"] != WIRE_VERSION:
        raise MessageDecodeError(f"unsupported wire version {data['v']!r} (this worker reads {WIRE_VERSION})")
    try:
        args, kwargs = data.get("args", []), data.get("kwargs", {})
        options, headers = data.get("options") or {}, data.get("headers") or {}
        mid, attempt, published_at = data.get("id"), data.get("attempt", 0), data.get("published_at")
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise MessageDecodeError("'args' must be a list and 'kwargs' an object")
        if not isinstance(options, dict) or not isinstance(headers, dict):
            raise MessageDecodeError("'options' and 'headers' must be objects")
        if mid is not None and not isinstance(mid, str):
            raise MessageDecodeError("'id' must be a string")
        if not isinstance(attempt, int) or isinstance(attempt, bool):
            raise MessageDecodeError("'attempt' must be an integer")
        if published_at is not None and not isinstance(published_at, (int, float)):
            raise MessageDecodeError("'published_at' must be a number")
    except MessageDecodeError:
        raise
    except Exception as exc:  # noqa: BLE001  # pragma: no cover - defensive: decode must never raise anything else
        raise MessageDecodeError(f"malformed envelope: {exc}") from None
    return Envelope(
        queue, args, kwargs, id=mid, published_at=published_at, attempt=attempt, options=options, headers=headers
    )


def dumps(obj: Any) -> bytes:
    """JSON-encode ``obj`` (orjson; non-JSON values are rendered with ``repr``)."""
    return orjson.dumps(obj, default=repr)


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)
