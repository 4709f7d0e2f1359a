"""Typos get "did you mean"; install commands name only extras that exist (issue 13)."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from boostkernel import boost
from boostkernel._catalog import EXTRAS, NAMES, SCHEMES
from boostkernel.errors import PluginNotInstalled
from boostkernel.params import BoostParams

ROOT = Path(__file__).resolve().parents[2]
KERNEL_EXTRAS = set(re.findall(r"^([a-z0-9-]+) = \[", (ROOT / "kernel/pyproject.toml").read_text(), re.M))


def _error(**params: object) -> str:
    with pytest.raises(PluginNotInstalled) as info:
        @boost("dym_q", **params)  # type: ignore[call-overload]
        def f() -> None:
            pass
    return str(info.value)


def test_rediss_suggests_redis_not_a_missing_extra() -> None:
    msg = _error(broker="rediss")
    assert "Did you mean 'redis'?" in msg
    assert "boostkernel[rediss]" not in msg


def test_thread_suggests_threads() -> None:
    msg = _error(concurrency="thread")
    assert "Did you mean 'threads'?" in msg
    assert "boostkernel[thread]" not in msg


def test_unknown_name_gets_no_install_command() -> None:
    msg = _error(broker="definitely-not-a-broker")
    assert "pip install" not in msg and "not a plugin of this project" in msg


def test_uninstalled_name_of_a_project_plugin_names_its_extra() -> None:
    # as raised when the redis plugin is not installed: its broker names map to the extra "redis"
    for name in ("redis", "redis-streams", "redis-pubsub"):
        msg = str(PluginNotInstalled("broker", name, ["sqlite", "memory"]))
        assert 'pip install "boostkernel[redis]"' in msg, msg
    msg = str(PluginNotInstalled("broker", "rediss", ["sqlite"]))
    assert "Did you mean 'redis'? (install it with: pip install \"boostkernel[redis]\")" in msg


def test_url_scheme_typo(tmp_path: Path) -> None:
    msg = _error(broker="reddis://127.0.0.1")
    assert "Did you mean redis://?" in msg


def test_catalog_names_only_real_extras() -> None:
    assert EXTRAS <= KERNEL_EXTRAS
    for kind in NAMES.values():
        assert set(kind.values()) <= EXTRAS
    assert set(SCHEMES.values()) <= EXTRAS
    assert NAMES["executor"]["threads"] == "threads" and NAMES["broker"]["redis-streams"] == "redis"


def test_every_install_hint_in_code_and_docs_names_an_existing_extra() -> None:
    """Any ``boostkernel[...]`` written in sources, READMEs or docs is an extra of kernel/pyproject.toml."""
    files = [*ROOT.glob("kernel/src/**/*.py"), *ROOT.glob("plugins/*/*/src/**/*.py"), ROOT / "README.md",
             *ROOT.glob("docs/**/*.md"), *ROOT.glob("plugins/*/*/README.md")]
    bad = []
    for f in files:
        for group in re.findall(r"boostkernel\[([a-z0-9, _-]+)\]", f.read_text()):
            for extra in (e.strip() for e in group.split(",")):
                if extra not in KERNEL_EXTRAS | {"testing", "all"}:
                    bad.append(f"{f.relative_to(ROOT)}: boostkernel[{extra}]")
    assert bad == []


def test_control_parameters_name_existing_extras() -> None:
    plugins = {f.metadata["plugin"] for f in fields(BoostParams) if f.metadata.get("plugin")}
    assert plugins <= EXTRAS, plugins - EXTRAS
