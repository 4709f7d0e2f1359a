"""The contract every control plugin passes: subclass :class:`ControlContract` and set four attributes.

::

    from boostkernel.testing import ControlContract

    class TestMyControl(ControlContract):
        control = "mycontrol"                     # the name given to registry.add_control
        on_params = {"my_param": 3}               # values of its options that switch it on
        invalid_params = [{"my_param": -1}]       # each must fail at decoration time (ConfigError)

The mixin provides:

* ``broker_name`` - a fixture parametrized over ``brokers`` (default ``sqlite`` and ``redis``); a Redis
  test needs the Redis server (``service("redis")`` semantics: skipped locally when unreachable, failing
  when ``CI`` is set) and the ``redis`` broker plugin.
* ``make_booster(fn, **params)`` - a booster on a fresh queue of that broker, with the data directory in
  a temporary folder; every booster made is stopped and its queue purged after the test.
* ``run_until(booster, cond, timeout)`` - start consuming and wait for a condition.
* Generic checks: the control is registered with a documented options dataclass whose options switch it on; with its parameters at
  their defaults it is not instantiated (off costs nothing: no control object, no hook in the chain);
  with ``on_params`` it is; each of ``invalid_params`` fails at decoration; and with ``on_params`` tasks
  published to a real broker run (override ``smoke_runs`` to ``False`` for controls that hold tasks back
  on purpose).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import fields
from typing import Any, ClassVar

import pytest

from ..booster import Booster
from ..errors import ConfigError
from ..options import describe
from ..params import BoostParams
from ..plugins import get_plugins
from .helpers import BoosterFactory, service_reachable, service_url, wait_until


class ControlContract:
    """Override the class attributes; add behaviour tests using the fixtures."""

    #: Name of the control under test (as registered).
    control: ClassVar[str] = ""
    #: Parameters that switch the control on.
    on_params: ClassVar[dict[str, Any]] = {}
    #: Parameter sets that must fail at decoration time with a ConfigError.
    invalid_params: ClassVar[list[dict[str, Any]]] = []
    #: Extra parameters every booster of the test class gets (e.g. concurrency).
    base_params: ClassVar[dict[str, Any]] = {}
    #: Brokers the ``broker_name`` fixture runs over.
    brokers: ClassVar[tuple[str, ...]] = ("sqlite", "redis")
    #: Whether the smoke test (tasks run with the control on) applies.
    smoke_runs: ClassVar[bool] = True

    # --- fixtures -------------------------------------------------------------------------------------
    @pytest.fixture
    def broker_name(self, request: pytest.FixtureRequest) -> str:
        name = str(getattr(request, "param", self.brokers[0]))
        require_broker(name)
        return name

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "broker_name" in metafunc.fixturenames:
            brokers = getattr(metafunc.function, "brokers", self.brokers)  # set by @on_brokers(...)
            metafunc.parametrize("broker_name", list(brokers), indirect=True)

    @pytest.fixture
    def make_booster(self, broker_name: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
                     ) -> Iterator[Callable[..., Booster[Any, Any]]]:
        monkeypatch.setenv("BOOSTKERNEL_DATA_DIR", str(tmp_path))
        make = BoosterFactory(f"ctl_{self.control}",
                              **{"broker": broker_name, **broker_params(broker_name), **self.base_params})
        yield make
        make.close_all()

    @staticmethod
    def run_until(booster: Booster[Any, Any], cond: Callable[[], bool], timeout: float = 10.0) -> bool:
        booster.consume()
        return wait_until(cond, timeout)

    # --- generic checks -----------------------------------------------------------------------------
    def test_control_is_registered_for_its_params(self) -> None:
        """The control registers an options dataclass; ``on_params`` are its options (or core fields), and
        every option is listed by ``boostkernel plugins list --json`` with its type, default and doc."""
        reg = get_plugins().get("control", self.control)
        core = {f.name for f in fields(BoostParams)}
        if reg.options is not None:
            infos = describe(reg.options, self.control)
            assert all(i.doc for i in infos), f"undocumented options: {[i.name for i in infos if not i.doc]}"
            assert set(reg.params) == {i.name for i in infos if i.switch} | (set(reg.params) & core)
        assert set(self.on_params) <= set(reg.params) | core | set(get_plugins().control_options())

    def test_off_costs_nothing(self, make_booster: Callable[..., Booster[Any, Any]]) -> None:
        from ..consumer import Consumer

        b = make_booster(lambda: None)
        assert all(c.name != self.control for c in b.control_classes)
        consumer = Consumer(b)
        try:
            assert [c for c in consumer.controls if c.name == self.control] == []
            assert consumer.gates == [] and consumer.befores == [] and consumer.afters == []
        finally:
            consumer.broker.close()

    def test_on_instantiates_the_control(self, make_booster: Callable[..., Booster[Any, Any]]) -> None:
        b = make_booster(lambda: None, **self.on_params)
        names = [c.name for c in b.control_classes]
        assert self.control in names

    def test_invalid_params_fail_at_decoration(self, make_booster: Callable[..., Booster[Any, Any]]) -> None:
        if not self.invalid_params:
            pytest.skip("this control declares no invalid parameter sets")
        for bad in self.invalid_params:
            with pytest.raises(ConfigError) as info:
                make_booster(lambda: None, **bad)
            assert str(info.value), f"{bad} raised an empty ConfigError"

    def test_tasks_run_with_the_control_on(self, make_booster: Callable[..., Booster[Any, Any]]) -> None:
        if not self.smoke_runs:
            pytest.skip("this control holds tasks back on purpose; its own tests cover running")
        import threading

        done: list[int] = []
        lock = threading.Lock()

        def task(i: int) -> int:
            with lock:
                done.append(i)
            return i

        b = make_booster(task, **self.on_params)
        for i in range(5):
            b.push(i)
        assert self.run_until(b, lambda: len(done) == 5, 20), f"only {sorted(done)} of 5 tasks ran"
        assert sorted(done) == [0, 1, 2, 3, 4]


def on_brokers(*names: str) -> Callable[[Any], Any]:
    """Run a test of a :class:`ControlContract` subclass on these brokers only (default: the class's)."""

    def mark(fn: Any) -> Any:
        fn.brokers = names
        return fn

    return mark


def broker_params(name: str) -> dict[str, Any]:
    """Connection parameters for a broker under test (Redis: ``BOOSTKERNEL_REDIS_URL`` or the local default)."""
    if name == "redis":
        return {"broker_url": service_url("redis")}
    return {}


def require_broker(name: str) -> None:
    """Skip (or fail under CI) when ``name`` cannot run here: its server is down or its plugin is missing."""
    ci = bool(os.environ.get("CI"))
    if name in ("redis", "rabbitmq", "postgres", "mysql", "mqtt", "nats", "kafka") and not service_reachable(name):
        msg = f"service {name!r} is not reachable at {service_url(name)}"
        if ci:
            pytest.fail(msg + " (CI is set: service tests must run)", pytrace=False)
        pytest.skip(msg)
    if name not in get_plugins().registry.items["broker"]:
        msg = f"broker plugin {name!r} is not installed"
        if ci:
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
