"""Typed options of controls: how a control plugin declares its ``@boost`` parameters.

A control declares its options as a frozen, keyword-only **dataclass** whose fields have defaults, and
registers it with ``registry.add_control(..., options=MyOptions)``::

    from dataclasses import dataclass
    from boostkernel import option

    @dataclass(frozen=True, kw_only=True)
    class ThrottleOptions:
        throttle_ms: int = option(0, "Milliseconds to wait before each task (0 = off)", per_message=True)

        def __post_init__(self) -> None:          # value checks; raise ConfigError with the fix
            if self.throttle_ms < 0:
                raise ConfigError(f"throttle_ms={self.throttle_ms!r}: must be >= 0")

Every field becomes a ``@boost`` parameter (and a ``BOOSTKERNEL_<NAME>`` variable and a
``[tool.boostkernel]`` key). Values are checked against the field's type at decoration time. The control
is switched on when any of its options differs from its default. Fields made with
``option(..., per_message=True)`` may also be overridden for one message with
``TaskOptions(overrides={"throttle_ms": 5})``; the control reads them from ``ctx.envelope.options``.
A control reads its options as ``self.options`` (an instance of its class).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, Field, fields
from typing import Any, Literal, Union, get_args, get_origin

from .errors import ConfigError


def option(default: Any, doc: str = "", *, per_message: bool = False, configurable: bool = True,
           switch: bool = True) -> Any:
    """A field of a control's options dataclass: its default, one line of documentation, and whether
    ``TaskOptions(overrides=...)`` may override it per message. ``configurable=False`` keeps it out of
    environment variables and pyproject.toml (values that are code, such as exception classes).
    ``switch=False`` marks a tuning option: setting it alone does not switch the control on."""
    meta = {"doc": doc, "per_message": per_message, "configurable": configurable, "switch": switch}
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class OptionInfo:
    """One option as shown by ``boostkernel plugins list`` and used by the validator."""

    name: str
    control: str
    type: str
    default: Any
    doc: str
    per_message: bool
    configurable: bool
    switch: bool = True
    annotation: Any = None

    def as_dict(self) -> dict[str, Any]:
        default = self.default
        if isinstance(default, tuple) and all(isinstance(t, type) for t in default):
            default = [t.__name__ for t in default]
        return {"name": self.name, "type": self.type, "default": default, "doc": self.doc,
                "per_message": self.per_message}


_info_cache: dict[tuple[type, str], list[OptionInfo]] = {}


def _default_of(f: Field[Any]) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def _type_name(t: Any) -> str:
    if get_origin(t) is Union:  # typing.Optional[X] as returned by get_type_hints on Python 3.10
        return " | ".join(_type_name(a) for a in get_args(t))
    if isinstance(t, type) and get_origin(t) is None:
        return t.__name__
    if t is type(None) or t is None:
        return "None"
    return str(t).replace("typing.", "").replace("NoneType", "None")


def describe(cls: type, control: str = "") -> list[OptionInfo]:
    """The options of a control's options class, with resolved types (cached)."""
    key = (cls, control)
    cached = _info_cache.get(key)
    if cached is not None:
        return cached
    if not dataclasses.is_dataclass(cls):
        raise ConfigError(f"options of control {control!r} must be a dataclass, got {cls!r}")
    hints = typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        default = _default_of(f)
        if default is MISSING:
            raise ConfigError(f"option {f.name!r} of control {control!r} has no default: every option needs one")
        ann = hints.get(f.name, Any)
        out.append(OptionInfo(f.name, control, _type_name(ann), default, str(f.metadata.get("doc", "")),
                              bool(f.metadata.get("per_message", False)),
                              bool(f.metadata.get("configurable", True)), bool(f.metadata.get("switch", True)),
                              ann))
    _info_cache[key] = out
    return out


def matches(value: Any, ann: Any) -> bool:
    """Whether ``value`` fits the type annotation ``ann`` (the subset of typing that options use)."""
    if ann is Any or ann is object:
        return True
    if ann is None or ann is type(None):
        return value is None
    origin = get_origin(ann)
    if origin is Union or (hasattr(types, "UnionType") and isinstance(ann, types.UnionType)):
        return any(matches(value, a) for a in get_args(ann))
    if origin is Literal:
        return value in get_args(ann)
    if ann is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if ann is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is tuple:
        args = get_args(ann)
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(matches(v, args[0]) for v in value)
        return len(args) == len(value) and all(matches(v, a) for v, a in zip(value, args, strict=True))
    if origin is type:
        (inner,) = get_args(ann) or (object,)
        return isinstance(value, type) and (inner is Any or issubclass(value, inner))
    if origin in (dict, Mapping):
        return isinstance(value, dict)
    if origin is list:
        return isinstance(value, list)
    if isinstance(ann, type):
        return isinstance(value, ann)
    return True  # an annotation this checker does not understand: the class's own checks decide


def build(cls: type, values: Mapping[str, Any], control: str, queue: str) -> Any:
    """An instance of ``cls`` from ``values``, type-checked first; errors say which parameter and why."""
    infos = {i.name: i for i in describe(cls, control)}
    for name, value in values.items():
        info = infos[name]
        if isinstance(value, list) and "tuple" in info.type:
            value = tuple(value)
        if not matches(value, info.annotation):
            raise ConfigError(f"@boost({queue!r}, {name}={value!r}): {name} must be {info.type} "
                              f"(control {control!r}: {info.doc or 'see its documentation'})")
    fixed = {k: (tuple(v) if isinstance(v, list) and "tuple" in infos[k].type else v) for k, v in values.items()}
    try:
        return cls(**fixed)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"@boost({queue!r}): invalid options for control {control!r}: {exc}") from None


def non_default(instance: Any, switches_only: bool = False) -> dict[str, Any]:
    """The options of ``instance`` whose values differ from their defaults (only switching ones if asked)."""
    out: dict[str, Any] = {}
    for f in fields(instance):
        if switches_only and not f.metadata.get("switch", True):
            continue
        v = getattr(instance, f.name)
        if v != _default_of(f):
            out[f.name] = v
    return out


def coerce_env(name: str, raw: str, default: Any, type_name: str = "") -> Any:
    """Turn a ``BOOSTKERNEL_<NAME>`` string into the type of the option (from its default or type name)."""
    raw_l = raw.strip().lower()
    var = f"BOOSTKERNEL_{name.upper()}"
    if isinstance(default, bool) or type_name == "bool":
        if raw_l in ("1", "true", "yes", "on"):
            return True
        if raw_l in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{var}={raw!r}: expected true/false")
    if raw_l in ("none", "null", "") and "None" in type_name:
        return None
    if "tuple" in type_name or "dict" in type_name or isinstance(default, (dict, tuple)):
        import orjson

        try:
            v = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ConfigError(f"{var}: expected JSON, got {raw!r}") from None
        return tuple(v) if isinstance(v, list) else v
    if (isinstance(default, int) and not isinstance(default, float)) or type_name.startswith("int"):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{var}={raw!r}: expected an integer") from None
    if isinstance(default, float) or "float" in type_name:
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{var}={raw!r}: expected a number") from None
    return raw
