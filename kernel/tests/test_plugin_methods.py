"""The typed declarations of the in-tree plugins' booster methods (boostkernel.methods.PluginMethods) match
the functions the plugins register, so what an IDE shows is what runs. mypy checks the calls themselves
(tests/typing/api_types.py)."""

from __future__ import annotations

import inspect
import typing

import pytest

from boostkernel import Booster, TaskOptions, boost
from boostkernel.catalog import KNOWN_METHODS
from boostkernel.methods import PluginMethods
from boostkernel.plugins import get_plugins

IN_TREE_METHODS = sorted(KNOWN_METHODS)


def _declared() -> list[str]:
    return sorted(n for n, v in vars(PluginMethods).items() if callable(v) and not n.startswith("_"))


def test_every_in_tree_booster_method_is_declared_and_nothing_else() -> None:
    assert _declared() == IN_TREE_METHODS


@pytest.mark.parametrize("name", IN_TREE_METHODS)
def test_declaration_matches_the_registered_function(name: str) -> None:
    fn = get_plugins().booster_method(name)
    assert fn is not None, f"{name}: its plugin ({KNOWN_METHODS[name]}) is not installed in the workspace"
    registered = inspect.signature(fn)
    declared = inspect.signature(getattr(PluginMethods, name))
    # the first parameter is the booster (self in the declaration)
    assert list(registered.parameters.values())[1:] == list(declared.parameters.values())[1:], name
    from boostkernel_workflow import Signature

    names = {"Booster": Booster, "TaskOptions": TaskOptions, "Signature": Signature}
    hints_registered = typing.get_type_hints(fn, localns=names)
    hints_declared = typing.get_type_hints(getattr(PluginMethods, name), localns=names)
    for param in list(declared.parameters)[1:] + ["return"]:
        assert hints_registered[param] == hints_declared[param], (name, param)


def test_methods_are_not_defined_on_the_class_at_run_time() -> None:
    """Booster.__getattr__ serves them: a missing plugin names what to install instead of running a stub."""
    assert not any(hasattr(Booster, n) for n in IN_TREE_METHODS)

    @boost("typed_methods_q", broker="memory")
    def f() -> None: ...

    assert callable(f.pause) and f.pause.func is get_plugins().booster_method("pause")  # type: ignore[attr-defined]
