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

import enum
import inspect
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


# --- typed arguments and results ----------------------------------------------------------------------
#
# Arguments and results travel as JSON. A value of another type (datetime, UUID, Decimal, set, tuple,
# Enum, dataclass, msgspec Struct …) is accepted only where the function's annotation says how to rebuild
# it: it is sent in its JSON form (msgspec.to_builtins) and rebuilt on the other side with
# msgspec.convert(value, annotation). Anywhere else it is refused with TypeError, never turned into a
# string silently. Plain JSON values cost two type checks per argument.

_JSON_SCALARS = (str, int, float, bool, type(None))


def json_problem(value: Any, depth: int = 0) -> str | None:
    """``None`` if ``value`` is plain JSON data (str, int, float, bool, None, lists/tuples and dicts with
    string keys of those), else the name of the first type that is not."""
    t = type(value)
    if t is str or t is int or t is float or t is bool or value is None:
        return None
    if depth > 200:
        return "a structure nested over 200 levels"
    if t is list or t is tuple:
        for v in value:
            p = json_problem(v, depth + 1)
            if p is not None:
                return p
        return None
    if t is dict:
        for k, v in value.items():
            if type(k) is not str:
                return f"{type(k).__name__} (as a dict key)"
            p = json_problem(v, depth + 1)
            if p is not None:
                return p
        return None
    if isinstance(value, _JSON_SCALARS) and not isinstance(value, enum.Enum):
        return None  # subclasses of str/int/float (not enums) are sent as their base value
    return type(value).__qualname__


_PLAIN = frozenset([int, str, float, bool, None, type(None), Any, dict, list])


def _rebuildable(annotation: Any) -> bool:
    """Whether ``annotation`` names a type that JSON does not carry as is and msgspec can rebuild."""
    if annotation is inspect.Parameter.empty or isinstance(annotation, str):
        return False
    try:
        if annotation in _PLAIN:
            return False  # the common case, decided without importing msgspec
    except TypeError:  # an unhashable annotation object
        pass
    try:
        import msgspec.inspect as mi

        info = mi.type_info(annotation)
    except Exception:  # noqa: BLE001 - not a type msgspec understands: plain JSON only
        return False
    return not _plain_info(info, mi) and not isinstance(info, mi.CustomType)


def _plain_info(info: Any, mi: Any) -> bool:
    if isinstance(info, (mi.AnyType, mi.StrType, mi.IntType, mi.FloatType, mi.BoolType, mi.NoneType)):
        return True
    if isinstance(info, mi.ListType):
        return _plain_info(info.item_type, mi)
    if isinstance(info, mi.DictType):
        return isinstance(info.key_type, mi.StrType) and _plain_info(info.value_type, mi)
    if isinstance(info, mi.UnionType):
        return all(_plain_info(t, mi) for t in info.types)
    return False


class TypeCodec:
    """How one function's arguments and result cross the wire, from its signature (built once).

    ``typed`` maps parameter names to annotations that are rebuilt (datetime, UUID, dataclasses …);
    every other argument must be plain JSON. ``result_type`` is the return annotation when it is rebuilt.
    """

    __slots__ = ("name", "names", "typed", "positional_typed", "result_type", "offset")

    def __init__(self, name: str, signature: Any, offset: int = 0) -> None:
        self.name = name
        params = [p for p in signature.parameters.values()][offset:]
        self.offset = offset
        self.names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        self.typed: dict[str, Any] = {p.name: p.annotation for p in params
                                      if p.kind is not p.VAR_POSITIONAL and p.kind is not p.VAR_KEYWORD
                                      and _rebuildable(p.annotation)}
        self.positional_typed = [(i, self.typed[n]) for i, n in enumerate(self.names) if n in self.typed]
        ret = signature.return_annotation
        self.result_type = ret if _rebuildable(ret) else None

    @property
    def any_typed(self) -> bool:
        return bool(self.typed)

    # --- publish side ---
    def encode_args(self, args: list[Any], kwargs: dict[str, Any]) -> None:
        """Check (and, for rebuilt parameters, convert in place) the arguments of one call."""
        typed, names = self.typed, self.names
        for i, v in enumerate(args):
            t = type(v)
            if t is int or t is str or t is float or t is bool or v is None:
                continue
            pname = names[i] if i < len(names) else None
            if pname is not None and pname in typed:
                args[i] = self._to_builtins(pname, v)
                continue
            self._check(pname or f"#{i + 1}", v)
        for k, v in kwargs.items():
            t = type(v)
            if t is int or t is str or t is float or t is bool or v is None:
                continue
            if k in typed:
                kwargs[k] = self._to_builtins(k, v)
                continue
            self._check(k, v)

    def _to_builtins(self, pname: str, v: Any) -> Any:
        import msgspec

        try:
            return msgspec.to_builtins(v)
        except TypeError as exc:
            raise TypeError(f"argument {pname!r} of {self.name}: cannot send {type(v).__qualname__}: {exc}") from None

    def _check(self, pname: str, v: Any) -> None:
        problem = json_problem(v)
        if problem is not None:
            raise TypeError(
                f"argument {pname!r} of {self.name} must be JSON-serialisable: it holds a value of type {problem}, "
                f"which JSON cannot carry as is (it would arrive as something else). Annotate the parameter with "
                f"its type (e.g. `{pname}: {problem}`) so the worker rebuilds it, or pass plain data (str, int, "
                "float, bool, None, list, dict)")

    # --- consume side ---
    def decode_args(self, args: list[Any], kwargs: dict[str, Any]) -> None:
        """Rebuild the annotated arguments in place; raise ``ValueError`` naming the argument if one does not fit."""
        import msgspec

        typed, pname = self.typed, ""
        try:
            for i, ann in self.positional_typed:
                if i < len(args):
                    pname = self.names[i]
                    args[i] = msgspec.convert(args[i], ann, strict=False)
            for pname in kwargs.keys() & typed.keys():
                kwargs[pname] = msgspec.convert(kwargs[pname], typed[pname], strict=False)
        except msgspec.ValidationError as exc:
            raise ValueError(f"argument {pname!r} of {self.name} does not fit its annotation: {exc}") from None

    # --- results ---
    def encode_result(self, value: Any) -> Any:
        """The JSON form of a return value (rebuilt by :meth:`decode_result`), or ``TypeError``."""
        t = type(value)
        if t is int or t is str or t is float or t is bool or value is None:
            return value
        if self.result_type is not None:
            import msgspec

            try:
                return msgspec.to_builtins(value)
            except TypeError as exc:
                raise TypeError(f"{self.name} returned a {type(value).__qualname__} that cannot be sent: {exc}") \
                    from None
        problem = json_problem(value)
        if problem is not None:
            raise TypeError(
                f"{self.name} returned a value of type {problem}, which JSON cannot carry as is, so no "
                "process could get it back as it was. Return plain data (str, int, float, bool, None, list, "
                "dict), or annotate the return type (e.g. `-> set[int]`) so AsyncResult.get() rebuilds it")
        return value

    def decode_result(self, value: Any) -> Any:
        if self.result_type is None:
            return value
        import msgspec

        return msgspec.convert(value, self.result_type, strict=False)
