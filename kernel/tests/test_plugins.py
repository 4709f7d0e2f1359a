"""Plugin discovery, failure isolation, block/allow lists, and the control chain mechanism."""

from __future__ import annotations

import types
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from boostkernel import Control, boost, hookimpl, option
from boostkernel.control import Outcome, TaskContext
from boostkernel.errors import Requeue
from boostkernel.plugins import Plugins, get_plugins, reset_plugins
from boostkernel.testing import wait_until


def test_default_plugins_are_loaded() -> None:
    ps = Plugins()
    for name in ("memory", "sqlite", "threads", "asyncio", "solo"):
        assert ps.statuses[name].status == "loaded", ps.statuses[name]
    assert {"memory", "sqlite"} <= set(ps.names("broker"))
    assert {"threads", "asyncio", "solo"} <= set(ps.names("executor"))
    assert ps.resolve_broker_name("sqlite:////tmp/x.db") == "sqlite"


def test_blocked_and_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOOSTKERNEL_DISABLED_PLUGINS", "memory")
    ps = Plugins()
    assert ps.statuses["memory"].status == "blocked"
    assert "memory" not in ps.names("broker")
    with pytest.raises(Exception, match="blocked"):
        ps.get("broker", "memory")
    monkeypatch.delenv("BOOSTKERNEL_DISABLED_PLUGINS")
    monkeypatch.setenv("BOOSTKERNEL_PLUGINS", "sqlite,threads")
    ps = Plugins()
    assert ps.statuses["sqlite"].status == "loaded"
    assert ps.statuses["solo"].status == "blocked"
    monkeypatch.setenv("BOOSTKERNEL_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert Plugins().statuses == {}


def test_a_broken_plugin_is_isolated() -> None:
    ps = Plugins()
    broken = types.ModuleType("broken_plugin")

    @hookimpl
    def register_brokers(registry: Any) -> None:
        registry.add_broker("half", "nowhere:Nothing", summary="x")
        raise RuntimeError("cannot register")

    broken.register_brokers = register_brokers  # type: ignore[attr-defined]
    ps.register_plugin(broken, "undo-broken")
    st = ps.statuses["undo-broken"]
    assert st.status == "failed" and "cannot register" in (st.error or "")
    assert "half" not in ps.names("broker"), "what a failed plugin half-registered is dropped"
    assert "memory" in ps.names("broker")


def test_duplicate_names_are_refused() -> None:
    ps = Plugins()
    dup = types.ModuleType("dup_plugin")

    @hookimpl
    def register_brokers(registry: Any) -> None:
        registry.add_broker("memory", "x:Y", summary="impostor")

    dup.register_brokers = register_brokers  # type: ignore[attr-defined]
    ps.register_plugin(dup, "undo-dup")
    assert ps.statuses["undo-dup"].status == "failed"
    assert "registered by both" in (ps.statuses["undo-dup"].error or "")


# --- the control chain ------------------------------------------------------------------------
EVENTS: list[str] = []


class OuterControl(Control):
    """Test control that records the hook points it passes."""

    name = "outer"
    order = 100

    def before(self, ctx: TaskContext) -> None:
        EVENTS.append("outer.before")

    def around(self, ctx: TaskContext, call_next: Any) -> Any:
        EVENTS.append("outer.around>")
        try:
            return call_next()
        finally:
            EVENTS.append("outer.around<")

    def after(self, ctx: TaskContext) -> None:
        EVENTS.append(f"outer.after:{ctx.status}")


class InnerControl(Control):
    """Test control wrapping inside OuterControl."""

    name = "inner"
    order = 200

    def around(self, ctx: TaskContext, call_next: Any) -> Any:
        EVENTS.append("inner.around>")
        return call_next() * 10


class NeverControl(Control):
    """Test control whose parameter is never set: must never be instantiated."""

    name = "never"

    def __init__(self, booster: Any) -> None:  # pragma: no cover - the point is it never runs
        raise AssertionError("a control that is off must not be instantiated")


@dataclass(frozen=True, kw_only=True)
class ChainOptions:
    chain: bool = option(False, "switch the test controls on")


@pytest.fixture
def chain_plugin(fresh_plugins: None) -> Iterator[None]:
    mod = types.ModuleType("chain_plugin")

    @hookimpl
    def register_controls(registry: Any) -> None:
        registry.add_control("inner", f"{__name__}:InnerControl", params=("chain",), order=200, summary="t")
        registry.add_control("outer", f"{__name__}:OuterControl", options=ChainOptions, order=100, summary="t")
        registry.add_control("never", f"{__name__}:NeverControl", params=("stats_interval",), summary="t")

    mod.register_controls = register_controls  # type: ignore[attr-defined]
    get_plugins().register_plugin(mod, "undo-chain")
    yield
    reset_plugins(None)


def test_control_chain_order_and_off_controls_cost_nothing(chain_plugin: None) -> None:
    EVENTS.clear()

    @boost(f"chain_{uuid.uuid4().hex[:8]}", broker="memory", results=True, chain=True)
    def f(x: int) -> int:
        EVENTS.append("call")
        return x

    assert [c.__name__ for c in f.control_classes] == ["OuterControl", "InnerControl", "ResultsControl"]
    r = f.push(4)
    f.consume()
    try:
        assert r.get(timeout=10) == 40
    finally:
        f.stop()
    assert wait_until(lambda: "outer.after:success" in EVENTS)
    assert EVENTS == ["outer.before", "outer.around>", "inner.around>", "call", "outer.around<",
                      "outer.after:success"]


class RequeueOnceControl(Control):
    """Test control whose ``after`` fails once for a passing reason: it requeues the message."""

    name = "requeue_once"
    order = 950
    failed: ClassVar[list[str]] = []

    def after(self, ctx: TaskContext) -> None:
        if ctx.status == "success" and not self.failed:
            self.failed.append(ctx.envelope.id)
            ctx.status = Outcome.REQUEUED
            ctx.exception = Requeue(0.0, "after-hook work failed")


@dataclass(frozen=True, kw_only=True)
class RequeueOptions:
    requeue_once: bool = option(False, "switch the test control on")


def test_an_after_hook_may_requeue_the_message(fresh_plugins: None, tmp_path: Any) -> None:
    """Work done in ``after`` before the ack (a workflow's next step) that fails puts the message back on
    the queue instead of losing it with the ack; it then runs again."""
    mod = types.ModuleType("requeue_plugin")

    @hookimpl
    def register_controls(registry: Any) -> None:
        registry.add_control("requeue_once", f"{__name__}:RequeueOnceControl", options=RequeueOptions, order=950,
                             summary="t")

    mod.register_controls = register_controls  # type: ignore[attr-defined]
    get_plugins().register_plugin(mod, "undo-requeue")
    RequeueOnceControl.failed.clear()
    runs: list[int] = []

    @boost(f"requeue_{uuid.uuid4().hex[:8]}", broker="sqlite", data_dir=str(tmp_path), requeue_once=True)
    def f(x: int) -> None:
        runs.append(x)

    f.push(7)
    f.consume()
    try:
        assert wait_until(lambda: len(runs) == 2 and f.count() == 0, 15), runs
    finally:
        f.stop()
    assert runs == [7, 7] and len(RequeueOnceControl.failed) == 1
    reset_plugins(None)
