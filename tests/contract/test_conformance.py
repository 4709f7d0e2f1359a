"""Static conformance of every installed plugin, and proof that each runs its contract suite."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

from boostkernel.conformance import check_all, check_entry_point_light
from boostkernel.plugins import Plugins

ROOT = Path(__file__).resolve().parents[2]
ENTRY_POINTS = sorted(metadata.entry_points(group="boostkernel"), key=lambda ep: ep.name)
# KafkaContract (boostkernel.testing.kafka) and ListenerBrokerContract (boostkernel.testing.listener) are
# BrokerContract subclasses for a family of brokers
CONTRACT_FOR = {"broker": ("BrokerContract", "FrameworkContract", "KafkaContract", "ListenerBrokerContract"),
                "store": ("StoreContract",),
                "executor": ("ExecutorContract", "GreenExecutorContract"), "control": ("ControlContract",)}


def test_every_plugin_conforms() -> None:
    assert check_all(light=False) == []


@pytest.mark.parametrize("ep", ENTRY_POINTS, ids=[ep.name for ep in ENTRY_POINTS])
def test_entry_point_is_light_and_loads(ep: metadata.EntryPoint) -> None:
    assert check_entry_point_light(ep.value) is None
    st = Plugins().statuses[ep.name]
    assert st.status == "loaded", st.error


def _plugin_dirs() -> list[Path]:
    return sorted(p.parent for p in ROOT.glob("plugins/*/*/pyproject.toml"))


@pytest.mark.parametrize("plugin_dir", _plugin_dirs(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_plugin_runs_the_contract_for_what_it_provides(plugin_dir: Path) -> None:
    ps = Plugins()
    pkg = "boostkernel_" + plugin_dir.name.replace("-", "_")
    kinds = {reg.kind for regs in ps.registry.items.values() for reg in regs.values()
             if reg.factory.startswith(pkg + ".")}
    assert kinds, f"{plugin_dir} registers nothing under {pkg}"
    tests = "\n".join(p.read_text() for p in (plugin_dir / "tests").glob("test_*.py"))
    for kind in kinds - {"command", "method"}:  # booster methods are tested with their control
        names = CONTRACT_FOR[kind]
        assert any(re.search(rf"\b{n}\b", tests) for n in names), \
            f"{plugin_dir.name} provides a {kind} but no test subclasses {' or '.join(names)}"
