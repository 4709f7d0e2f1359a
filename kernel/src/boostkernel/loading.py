"""Importing the user's module (a dotted name or a ``.py`` path) and choosing the boosters to run."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from .errors import ConfigError
from .registry import REGISTRY


def import_target(module: str, run_name: str | None = None) -> ModuleType:
    """Import a module by name, or a ``.py`` file by path (the worker CLI's argument)."""
    if module.endswith(".py") or os.sep in module:
        import runpy

        path = os.path.abspath(module)
        if os.path.dirname(path) not in sys.path:
            sys.path.insert(0, os.path.dirname(path))
        name = run_name or os.path.splitext(os.path.basename(path))[0]
        mod = ModuleType(name)
        mod.__file__ = path
        sys.modules.setdefault(name, mod)
        mod.__dict__.update(runpy.run_path(path, run_name=name))
        return sys.modules[name]
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return importlib.import_module(module)


def boosters_of(module: str | ModuleType | None, queues: Sequence[str] | None = None,
                group: str | None = None) -> list[Any]:
    """The boosters a worker should run: those defined by ``module`` (or all), filtered by queues/group.

    ``module`` is a module object, a module name (imported) or a ``.py`` path (run), or ``None`` for every
    booster of this process.
    """
    mod_name = None
    if isinstance(module, ModuleType):
        mod_name = module.__name__
    elif module is not None:
        if not isinstance(module, str):
            raise ConfigError(f"boosters_of(module=...) takes a module, a module name or a .py path, "
                              f"not {type(module).__name__}")
        mod = import_target(module)
        mod_name = mod.__name__
    chosen = []
    for b in REGISTRY.values():
        if queues:
            if b.queue not in queues:
                continue
        elif mod_name is not None and b.fn.__module__ != mod_name:
            continue
        if group is not None and b.params.group != group:
            continue
        chosen.append(b)
    if queues:
        missing = set(queues) - {b.queue for b in chosen}
        if missing:
            where = getattr(module, "__name__", module) or "this process"
            raise ConfigError(f"no booster for queue(s) {sorted(missing)} in {where}")
    return chosen
