from __future__ import annotations

from pathlib import Path

import pytest

from boostkernel import TaskOptions
from boostkernel.config import build_params
from boostkernel.errors import ConfigError
from boostkernel.params import pyproject_settings


def test_defaults() -> None:
    p = build_params("q", {})
    assert (p.broker, p.concurrency, p.workers, p.results) == ("sqlite", "threads", 16, False)


def test_precedence_argument_over_env_over_pyproject(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.boostkernel]\nbroker = "memory"\nworkers = 4\nresults = true\n')
    sub = tmp_path / "pkg"
    sub.mkdir()
    monkeypatch.chdir(sub)
    pyproject_settings.__globals__["_pyproject_cache"].clear()
    p = build_params("q", {})
    assert (p.broker, p.workers, p.results) == ("memory", 4, True)
    monkeypatch.setenv("BOOSTKERNEL_WORKERS", "7")
    monkeypatch.setenv("BOOSTKERNEL_RESULTS", "false")
    p = build_params("q", {})
    assert (p.broker, p.workers, p.results) == ("memory", 7, False)
    p = build_params("q", {"workers": 9})
    assert p.workers == 9
    pyproject_settings.__globals__["_pyproject_cache"].clear()


def test_unknown_parameter_suggests_the_right_one() -> None:
    with pytest.raises(ConfigError, match="did you mean 'workers'"):
        build_params("q", {"worker": 3})


@pytest.mark.parametrize("given,match", [
    ({"workers": 0}, "workers=0"),
    ({"qps": -1}, "qps=-1"),
    ({"timeout": 0}, "timeout=0"),
    ({"retry_on": (int,)}, "retry_on"),
    ({"retry_mode": "x"}, "retry_mode"),
])
def test_invalid_values_fail_with_fix(given: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_params("q", given)


def test_invalid_queue_name() -> None:
    with pytest.raises(ConfigError, match="invalid queue name"):
        build_params("bad name!", {})


def test_bad_env_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOOSTKERNEL_WORKERS", "many")
    with pytest.raises(ConfigError, match="BOOSTKERNEL_WORKERS"):
        build_params("q", {})


def test_task_options_to_wire() -> None:
    import datetime as dt
    import time

    o = TaskOptions(countdown=10, priority=5, expires=30).to_wire()
    assert abs(o["eta"] - (time.time() + 10)) < 1 and o["priority"] == 5 and o["expires"] == 30
    when = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    assert TaskOptions(eta=when).to_wire() == {"eta": when.timestamp()}
    with pytest.raises(ConfigError, match="timezone-aware"):
        TaskOptions(eta=dt.datetime(2030, 1, 1)).to_wire()
    assert TaskOptions().to_wire() == {}
