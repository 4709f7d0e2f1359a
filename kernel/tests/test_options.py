"""Controls own their options: declared as dataclasses, accepted by @boost, typed, listed, overridable."""

from __future__ import annotations

import json
import subprocess
import sys
import typing
import uuid
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import pytest

from boostkernel import ConfigError, PluginNotInstalled, TaskOptions, boost
from boostkernel.catalog import KNOWN_METHODS, KNOWN_OPTIONS
from boostkernel.kwargs import BoostKwargs
from boostkernel.options import describe
from boostkernel.params import BoostParams
from boostkernel.plugins import get_plugins

IN_TREE_CONTROLS = {"ratelimit", "retry", "timeout", "dedup", "expiry", "timewindow", "pause", "cancel",
                    "circuitbreaker", "quota", "stats", "workflow"}


def q() -> str:
    return f"opt_{uuid.uuid4().hex[:10]}"


def test_user_code_is_unchanged_and_options_reach_their_controls() -> None:
    @boost(q(), broker="memory", qps=5, max_retries=3, timeout=30, dedup=True)
    def f(x: int) -> int:
        return x

    assert {c.name for c in f.control_classes} == {"ratelimit", "retry", "timeout", "dedup"}
    assert f.params.qps == 5 and f.params.max_retries == 3 and f.params.timeout == 30 and f.params.dedup is True
    assert f.params.options("retry").max_retries == 3
    assert f.params.option("timeout") == 30
    assert not {"qps", "max_retries", "timeout", "dedup"} & {fl.name for fl in fields(BoostParams)}  # core only


def test_wrong_type_fails_at_decoration_with_the_expected_type() -> None:
    with pytest.raises(ConfigError, match=r"qps must be float \| None"):
        boost(q(), broker="memory", qps="fast")
    with pytest.raises(ConfigError, match="max_retries must be int"):
        boost(q(), broker="memory", max_retries=2.5)
    with pytest.raises(ConfigError, match="circuit_breaker must be"):
        boost(q(), broker="memory", circuit_breaker=(5, "soon"))


def test_unknown_option_suggests_across_every_control() -> None:
    with pytest.raises(ConfigError, match="did you mean 'max_retries'"):
        boost(q(), broker="memory", max_retry=3)
    with pytest.raises(ConfigError, match="did you mean 'cancellable'"):
        boost(q(), broker="memory", cancelable=True)


@pytest.fixture
def without_timewindow(fresh_plugins: None) -> Iterator[None]:
    get_plugins().unregister_plugin("timewindow")
    yield


def test_option_of_a_known_control_that_is_not_installed_names_the_plugin(without_timewindow: None) -> None:
    with pytest.raises(PluginNotInstalled, match=r'pip install "boostkernel\[timewindow\]"'):
        boost(q(), broker="memory", allowed_window="* 9-17 * * *")


def test_environment_sets_a_control_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOOSTKERNEL_QPS", "2.5")
    monkeypatch.setenv("BOOSTKERNEL_QUOTA", "[10, 60]")
    b = boost(q(), broker="memory")(lambda: None)
    assert b.params.qps == 2.5 and b.params.quota == (10, 60.0)
    assert {c.name for c in b.control_classes} == {"ratelimit", "quota"}


def test_per_message_overrides_are_typed_and_need_their_control() -> None:
    seen: list[object] = []

    @boost(q(), broker="memory", max_retries=1)
    def f() -> None:
        from boostkernel import current_task

        ctx = current_task()
        assert ctx is not None
        seen.append(ctx.envelope.options.get("max_retries"))

    out = f.message(options=TaskOptions(overrides={"max_retries": 5}))
    assert b'"max_retries":5' in out.body
    with pytest.raises(ConfigError, match="must be int"):
        f.publish({}, TaskOptions(overrides={"max_retries": "many"}))
    with pytest.raises(ConfigError, match="not a per-message option"):
        f.publish({}, TaskOptions(overrides={"retry_backoff": 1.0}))
    with pytest.raises(ConfigError, match="control on queue .* which is off"):
        f.publish({}, TaskOptions(overrides={"expires": 10.0}))


def test_tuning_options_do_not_switch_a_control_on() -> None:
    b = boost(q(), broker="memory", dedup_busy_delay=0.2)(lambda: None)
    assert b.control_classes == []


def test_catalogue_and_typed_kwargs_match_the_in_tree_controls() -> None:
    plugins = get_plugins()
    infos = plugins.control_options()
    in_tree = {n: i for n, i in infos.items() if i.control in IN_TREE_CONTROLS}
    assert {i.control for i in in_tree.values()} == IN_TREE_CONTROLS
    assert {n: i.control for n, i in in_tree.items()} == KNOWN_OPTIONS
    hints = typing.get_type_hints(BoostKwargs)
    core = {fl.name for fl in fields(BoostParams)} - {"queue", "controls"}
    assert set(hints) == core | set(in_tree)
    for name, info in in_tree.items():
        assert hints[name] == info.annotation, name
    methods = {n: r.plugin for n, r in plugins.registry.items["method"].items()
               if r.plugin in IN_TREE_CONTROLS | {"schedule"}}
    assert methods == KNOWN_METHODS


def test_booster_methods_come_from_plugins() -> None:
    b = boost(q(), broker="memory")(lambda: None)
    assert callable(b.pause) and callable(b.revoke) and callable(b.schedules)
    with pytest.raises(AttributeError):
        b.no_such_method  # noqa: B018


def test_known_method_of_a_missing_plugin_names_it(fresh_plugins: None) -> None:
    get_plugins().unregister_plugin("pause")
    b = boost(q(), broker="memory")(lambda: None)
    with pytest.raises(PluginNotInstalled, match=r'boostkernel\[pause\]'):
        b.pause()


def test_plugins_list_json_shows_each_controls_options() -> None:
    out = subprocess.run([sys.executable, "-m", "boostkernel", "plugins", "list", "--json"],
                         capture_output=True, text=True, check=True, timeout=120)
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    retry = rows["retry"]["capabilities"]["control:retry"]
    opts = {o["name"]: o for o in retry["options"]}
    assert opts["max_retries"] == {"name": "max_retries", "type": "int", "default": 0, "per_message": True,
                                   "doc": "Retries after a failure before the message goes to the dead-letter queue"}
    assert opts["retry_on"]["default"] == ["Exception"]
    assert {o["name"] for o in rows["pause"]["capabilities"]["control:pause"]["options"]} == {
        "pausable", "pause_poll_interval"}


CLIENT_LIBRARIES = ("eventlet", "gevent", "huey", "redis", "celery", "kafka", "confluent_kafka", "pika",
                    "aio_pika", "kombu", "dramatiq", "rq", "apscheduler", "croniter")


def test_plugins_list_json_imports_no_client_library() -> None:
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "boostkernel", "plugins", "list", "--json"],
                         capture_output=True, text=True, check=True, timeout=120)
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert len(json.loads(out.stdout)) >= 20  # every in-tree plugin listed
    assert "boostkernel.plugins" in imported  # -X importtime did report
    loaded = sorted(m for m in imported if m.split(".")[0] in CLIENT_LIBRARIES)
    assert loaded == [], f"plugins list imported client libraries: {loaded}"
    # the listening brokers' and the asyncio executor's modules are read for their capabilities: asyncio
    # (10-16 ms) is imported when a loop is made, not with them (issue #11)
    assert "asyncio" not in imported, "plugins list imported asyncio"
    # the http broker's listener (http.server) and client (http.client, which loads ssl): 15-20 ms together
    assert not {"http.server", "http.client"} & imported, "plugins list imported the http broker's server or client"


def test_import_boostkernel_imports_neither_asyncio_nor_metadata() -> None:
    code = "import sys, boostkernel; print(sorted(m for m in ('asyncio', 'importlib.metadata', 'pluggy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_every_in_tree_option_is_documented() -> None:
    for reg in get_plugins().registry.items["control"].values():
        if reg.options is not None and reg.name in IN_TREE_CONTROLS:
            for info in describe(reg.options, reg.name):
                assert info.doc, f"{reg.name}.{info.name} has no doc"


def test_an_idle_sqlite_worker_imports_no_async_stack_nor_compat_layer(tmp_path: Path) -> None:
    """The footprint of ``boostkernel worker`` (issue #11: an idle sqlite worker <= 30 MB RSS): plugin
    commands are imported when run, the funboost layer when used, msgspec only for typed arguments."""
    (tmp_path / "idle_tasks.py").write_text(
        "from boostkernel import boost\n\n"
        f"@boost('idle_imports', broker='sqlite', data_dir={str(tmp_path)!r})\n"
        "def idle(x: int, name: str = '') -> None:\n    pass\n")
    code = ("import sys, threading, os, signal\n"
            "threading.Timer(3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()\n"
            "sys.argv = ['boostkernel', 'worker', 'idle_tasks.py']\n"
            "try:\n    import runpy; runpy.run_module('boostkernel', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "heavy = ('asyncio', 'ssl', 'msgspec', 'boostkernel_funboost.booster', 'boostkernel_deploy.cli')\n"
            "print('LOADED', sorted(m for m in heavy if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert "consuming idle_imports" in out.stderr, out.stderr[-2000:]
    assert "LOADED []" in out.stdout, (out.stdout, out.stderr[-2000:])
