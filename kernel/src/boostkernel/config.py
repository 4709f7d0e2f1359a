"""Where a booster's settings come from: arguments > ``BOOSTKERNEL_*`` environment > pyproject.toml > defaults.

:func:`build_params` splits the ``@boost`` keywords into core settings (:class:`~boostkernel.params.BoostParams`)
and the options of each installed control (validated against the control's options dataclass).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from .errors import ConfigError
from .params import _NOT_CONFIGURABLE, BoostParams, pyproject_settings
from .plugins import get_plugins


def build_params(queue: str, given: Mapping[str, Any]) -> BoostParams:
    """Merge defaults < pyproject.toml < environment < ``given`` into validated :class:`BoostParams`.

    ``given`` holds core settings and the options of any installed control. An unknown name fails with
    "did you mean" over every accepted name, or with the install command when a known control plugin that
    is not installed owns it.
    """
    from .options import coerce_env

    plugins = get_plugins()
    known = {f.name: f for f in fields(BoostParams) if f.name != "controls"}
    option_infos = plugins.control_options()  # option name -> OptionInfo, every installed control
    unknown = set(given) - set(known) - set(option_infos)
    if unknown:
        raise unknown_parameters_error(queue, sorted(unknown), [*known, *option_infos])
    merged: dict[str, Any] = {}
    per_control: dict[str, dict[str, Any]] = {}
    sources: dict[str, str] = {}  # where each setting came from, for errors about mixed sources
    source = "[tool.boostkernel] in pyproject.toml"

    def put(name: str, value: Any) -> None:
        sources[name] = source if source != "env" else f"BOOSTKERNEL_{name.upper()}"
        info = option_infos.get(name)
        if info is None:
            merged[name] = value
        else:
            per_control.setdefault(info.control, {})[name] = value

    for name, value in pyproject_settings().items():
        info = option_infos.get(name)
        if name in known and name not in _NOT_CONFIGURABLE:
            put(name, tuple(value) if isinstance(value, list) else value)
        elif info is not None and info.configurable:
            put(name, value)
        elif info is not None or name in _NOT_CONFIGURABLE:
            raise ConfigError(f"[tool.boostkernel] in pyproject.toml sets {name!r}, which cannot come from "
                              f"configuration (it is code or the booster's identity): pass it to @boost")
        elif name != "queues":
            raise unknown_parameters_error(queue, [name], [*known, *option_infos],
                                           where="[tool.boostkernel] in pyproject.toml has")
    source = "env"
    for name, f in known.items():
        if name in _NOT_CONFIGURABLE:
            continue
        raw = os.environ.get(f"BOOSTKERNEL_{name.upper()}")
        if raw is not None:
            default = f.default if f.default is not dataclasses.MISSING else {}
            put(name, coerce_env(name, raw, default))
    for name, info in option_infos.items():
        raw = os.environ.get(f"BOOSTKERNEL_{name.upper()}")
        if raw is not None and info.configurable:
            put(name, coerce_env(name, raw, info.default, info.type))
    for name, value in given.items():
        source = f"@boost({name}=...)"
        put(name, value)
    merged["queue"] = queue
    params = fill_controls(BoostParams(**merged), per_control)
    params.__dict__["_sources"] = sources
    return params


def fill_controls(params: BoostParams, given: Mapping[str, Mapping[str, Any]] | None = None) -> BoostParams:
    """Give ``params`` an options instance for every installed control that has options (those in
    ``given``, by control name, set; the others at their defaults). Type errors fail here."""
    from .options import build

    for reg in get_plugins().registry.items["control"].values():
        if reg.options is not None and reg.name not in params.controls:
            params.controls[reg.name] = build(reg.options, (given or {}).get(reg.name, {}), reg.name, params.queue)
    return params


def unknown_parameters_error(queue: str, names: list[str], accepted: list[str],
                             where: str = "") -> ConfigError:
    """"did you mean" over every accepted name; the plugin to install when a known control owns the name."""
    import difflib

    from .catalog import KNOWN_OPTIONS
    from .errors import PluginNotInstalled

    hints = []
    for u in names:
        plugin = KNOWN_OPTIONS.get(u)
        if plugin is not None:
            return PluginNotInstalled("control", plugin, hint=f'Parameter {u!r} of queue {queue!r} needs it: '
                                                               f'pip install "boostkernel[{plugin}]"')
        close = difflib.get_close_matches(u, accepted, n=1)
        hints.append(f"{u!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    if where:
        return ConfigError(f"{where} an unknown key {', '.join(hints)}")
    return ConfigError(f"unknown @boost parameter(s) for queue {queue!r}: {', '.join(hints)}")
