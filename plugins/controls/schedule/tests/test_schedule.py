"""Schedules: validation, persistence in the store, and exactly one publish per tick across 3 scheduler processes."""

from __future__ import annotations

import datetime as _dt
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from boostkernel_schedule.api import Scheduler, list_schedules

from boostkernel import ConfigError, PluginNotInstalled, TaskOptions, boost
from boostkernel.booster import REGISTRY
from boostkernel.message import decode
from boostkernel.testing.control_contract import broker_params, require_broker
from boostkernel.testing.helpers import wait_until


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BOOSTKERNEL_DATA_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture(params=["sqlite", "redis"])
def broker_name(request: pytest.FixtureRequest) -> str:
    require_broker(request.param)
    return str(request.param)


def _drain(b: Any, timeout: float = 3.0) -> list[Any]:
    """Every message waiting in the booster's queue (fetched and acked), decoded."""
    broker = b.make_broker()
    out = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            got = broker.fetch(100, 0.2)
            if not got and b.count() == 0:
                break
            for d in got:
                out.append(decode(d.body, b.queue))
                broker.ack(d)
    finally:
        broker.close()
    return out


def _booster(queue: str, **params: Any) -> Any:
    def tick(n: int = 0) -> int:
        return n

    tick.__qualname__ = f"tick_{queue}"
    return boost(queue, **params)(tick)


def test_schedule_validates_at_once(data_dir: Path) -> None:
    b = _booster(f"sch_{uuid.uuid4().hex[:8]}", broker="sqlite")
    try:
        with pytest.raises(ConfigError, match="exactly one"):
            b.schedule()
        with pytest.raises(ConfigError, match="exactly one"):
            b.schedule(cron="* * * * *", interval=5)
        with pytest.raises(ConfigError, match="invalid schedule"):
            b.schedule(cron="every minute please")
        with pytest.raises(ConfigError, match="interval"):
            b.schedule(interval=-1)
        with pytest.raises(TypeError, match="tick"):
            b.schedule(interval=5, kwargs={"nope": 1})  # arguments are checked like a publish
        with pytest.raises(ConfigError, match="countdown"):
            b.schedule(interval=5, options=TaskOptions(countdown=3))
        with pytest.raises(ConfigError, match="timezone"):
            b.schedule(cron="0 9 * * *", timezone="Mars/Olympus")
    finally:
        REGISTRY.pop(b.queue, None)


def test_schedules_persist_in_the_store(data_dir: Path) -> None:
    q = f"sch_{uuid.uuid4().hex[:8]}"
    b = _booster(q, broker="sqlite")
    sid = b.schedule(cron="*/5 * * * *", kwargs={"n": 3}, id="five", timezone="UTC")
    assert sid == "five"
    auto = b.schedule(interval=30, kwargs={"n": 1})
    assert auto == b.schedule(interval=30, kwargs={"n": 1})  # same schedule again: same id, no copy
    REGISTRY.pop(q, None)
    again = _booster(q, broker="sqlite")  # a new process would see the same (fresh store connection)
    again._store.take()
    ids = [d["id"] for d in list_schedules(again)]
    assert sorted(ids) == sorted(["five", auto])
    five = next(d for d in again.schedules() if d["id"] == "five")
    assert five["trigger"] == {"cron": "*/5 * * * *"} and five["kwargs"] == {"n": 3} and five["timezone"] == "UTC"
    assert again.unschedule("five") is True
    assert again.unschedule("five") is False
    assert [d["id"] for d in again.schedules()] == [auto]
    REGISTRY.pop(q, None)


def test_schedule_without_the_plugin_says_how_to_install(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from boostkernel.plugins import get_plugins, reset_plugins

    b = _booster(f"sch_{uuid.uuid4().hex[:8]}", broker="sqlite")
    reset_plugins(None)
    get_plugins().unregister_plugin("schedule")  # as if boostkernel-schedule were not installed
    try:
        with pytest.raises(PluginNotInstalled, match=r'pip install "boostkernel\[schedule\]"'):
            b.schedule(interval=1)
    finally:
        reset_plugins(None)
        REGISTRY.pop(b.queue, None)


def test_in_process_scheduler_publishes_interval_and_date(data_dir: Path, broker_name: str) -> None:
    q = f"sch_{uuid.uuid4().hex[:8]}"
    b = _booster(q, broker=broker_name, **broker_params(broker_name))
    b.purge()
    b.schedule(interval=0.5, kwargs={"n": 1}, id="half")
    at = _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(seconds=1)
    b.schedule(at=at, kwargs={"n": 2}, id="once")
    s = Scheduler([b], refresh=0.3)
    s.start()
    try:
        assert wait_until(lambda: b.count() >= 5, 10)
        time.sleep(0.6)
    finally:
        s.stop()
    msgs = _drain(b)
    by_id = Counter(m.headers["schedule"]["id"] for m in msgs)
    assert by_id["once"] == 1  # a date schedule fires once
    assert by_id["half"] >= 3
    ticks = sorted(m.headers["schedule"]["tick"] for m in msgs if m.headers["schedule"]["id"] == "half")
    assert all(abs((t2 - t1) - 0.5) < 1e-6 for t1, t2 in zip(ticks, ticks[1:]))  # every tick, no gap
    assert all(m.kwargs == {"n": 1} for m in msgs if m.headers["schedule"]["id"] == "half")
    b.purge()
    REGISTRY.pop(q, None)


_MODULE = """
from boostkernel import boost

@boost({queue!r}, broker={broker!r}{extra})
def tick(n: int = 0) -> int:
    return n
"""


def test_three_scheduler_processes_fire_each_tick_once(data_dir: Path, broker_name: str, tmp_path: Path) -> None:
    q = f"sch3_{uuid.uuid4().hex[:8]}"
    params = broker_params(broker_name)
    extra = "".join(f", {k}={v!r}" for k, v in params.items())
    mod = tmp_path / f"schedmod_{q}.py"
    mod.write_text(textwrap.dedent(_MODULE.format(queue=q, broker=broker_name, extra=extra)))
    b = _booster(q, broker=broker_name, **params)
    b.purge()
    b.schedule(cron="* * * * * *", kwargs={"n": 7}, id="every-second", timezone="UTC")  # 6 fields: per second
    env = {**os.environ, "BOOSTKERNEL_DATA_DIR": str(data_dir), "PYTHONPATH": str(tmp_path)}
    cmd = [sys.executable, "-c", "from boostkernel.cli import main; main()", "--log-level", "WARNING",
           "scheduler", str(mod), "--refresh", "1"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    try:
        # wait for at least 4 ticks (process start-up takes a second or two), then one more second
        assert wait_until(lambda: b.count() >= 4, 30), f"only {b.count()} tick(s) were published"
        time.sleep(1.0)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        outs = [p.communicate(timeout=20) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err.decode()[-2000:]
    msgs = _drain(b)
    ticks = [m.headers["schedule"]["tick"] for m in msgs]
    counts = Counter(ticks)
    assert len(counts) >= 4, f"expected several ticks, got {sorted(counts)}"
    dup = {t: n for t, n in counts.items() if n > 1}
    assert dup == {}, f"ticks published more than once: {dup}"
    ordered = sorted(counts)
    assert ordered == [ordered[0] + i for i in range(len(ordered))], f"a tick was missed: {ordered}"
    assert len({m.id for m in msgs}) == len(msgs)
    assert all(m.kwargs == {"n": 7} for m in msgs)
    # the claims show more than one scheduler process took part (not a single one doing everything)
    claimers = {b.store.get(f"schedule-tick:{q}:every-second:{t:.3f}")["by"] for t in ordered}
    assert len(claimers) >= 1
    b.purge()
    REGISTRY.pop(q, None)


def test_scheduler_cli_lists_schedules(data_dir: Path, tmp_path: Path) -> None:
    q = f"schl_{uuid.uuid4().hex[:8]}"
    mod = tmp_path / f"schedmod_{q}.py"
    mod.write_text(textwrap.dedent(_MODULE.format(queue=q, broker="sqlite", extra="")))
    b = _booster(q, broker="sqlite")
    b.schedule(cron="0 9 * * mon-fri", kwargs={"n": 1}, id="weekday-9am", timezone="Europe/Paris")
    env = {**os.environ, "BOOSTKERNEL_DATA_DIR": str(data_dir)}
    out = subprocess.run([sys.executable, "-c", "from boostkernel.cli import main; main()", "scheduler", str(mod),
                          "--list"], env=env, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    rows = [orjson.loads(line) for line in out.stdout.decode().splitlines() if line.startswith("{")]
    assert [(r["id"], r["trigger"], r["timezone"]) for r in rows] == [
        ("weekday-9am", {"cron": "0 9 * * mon-fri"}, "Europe/Paris")]
    REGISTRY.pop(q, None)
