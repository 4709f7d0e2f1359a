"""kill -9 in the middle of a chord: the callback is not lost, and runs once.

1. A worker process runs the members of a 16-member chord (4 at a time, 0.4 s each) and is SIGKILLed after
   some members finished and while others run (SQLite, Redis, and RabbitMQ with the Redis store). A fresh worker picks up what the dead one
   held (the broker redelivers it), finishes the members and publishes the callback, which runs once.
2. The worker is SIGKILLed at the worst moment: the last member's result is stored, the callback is not
   published and the member's message is not acknowledged (SQLite).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from boostkernel.testing import wait_until
from boostkernel.testing.chaos import Ledger, WorkerProcess
from boostkernel.testing.control_contract import require_broker
from boostkernel.testing.helpers import import_module_file, service_url

pytestmark = pytest.mark.serial  # a kill and a redelivery bound in seconds: run alone (.ci/run)

N = 16


def _broker_args(broker: str, tmp_path: Path) -> str:
    if broker == "sqlite":
        return (f'broker="sqlite", broker_url="sqlite:///{tmp_path / "queue.db"}", '
                'broker_options={"lease": 2.0, "heartbeat_interval": 0.5, "reap_interval": 0.5}')
    if broker == "rabbitmq":  # a killed consumer's connection closes: RabbitMQ requeues what it held at once
        return (f'broker="rabbitmq", broker_url={service_url("rabbitmq")!r}, '
                f'store="redis", store_url={service_url("redis")!r}')
    return (f'broker="redis", broker_url={service_url("redis")!r}, '
            'broker_options={"heartbeat_interval": 0.5, "dead_after": 2.0, "reap_interval": 0.5, "idle_poll": 0.2}')


@pytest.mark.parametrize("broker", ["sqlite", "redis", "rabbitmq"])
def test_sigkill_mid_chord_loses_no_callback(tmp_path: Path, broker: str) -> None:
    require_broker(broker)
    require_broker("redis")  # the store of the rabbitmq case
    ledger_path, suffix = tmp_path / "ledger.db", uuid.uuid4().hex[:8]
    module = f"wf_chaos_{broker}_{suffix}"
    tasks: Any = import_module_file(tmp_path, module, f"""
        import time
        from boostkernel import boost
        from boostkernel.testing.chaos import Ledger

        ledger = Ledger({str(ledger_path)!r})

        @boost("wf_members_{suffix}", {_broker_args(broker, tmp_path)}, workers=4, results=True, workflow=True,
               max_deliveries=50)
        def member(i: int) -> int:
            time.sleep(0.4)
            ledger.record(f"m{{i}}")
            return i * i

        @boost("wf_total_{suffix}", {_broker_args(broker, tmp_path)}, workers=2, results=True)
        def total(values: list[int]) -> int:
            ledger.record("total")
            return sum(values)
    """)
    from boostkernel_workflow import chord

    ledger = Ledger(ledger_path)
    r = chord([tasks.member.s(i) for i in range(N)], tasks.total.s()).push()

    worker = WorkerProcess(module, tmp_path, env={"BOOSTKERNEL_DATA_DIR": str(tmp_path)})
    worker.start()
    try:
        assert wait_until(lambda: sum(n for k, n in ledger.keys().items() if k.startswith("m")) >= 5, 30, 0.01), \
            worker.log()[-3000:]
        worker.kill()  # mid-chord: some members done, others running or waiting
        done_at_kill = {k for k in ledger.keys() if k.startswith("m")}
        assert 5 <= len(done_at_kill) < N and "total" not in ledger.keys()

        worker.start()  # a fresh worker finishes the chord
        assert r.get(90) == sum(i * i for i in range(N)), worker.log()[-3000:]
        ran = ledger.keys()
        assert {f"m{i}" for i in range(N)} <= set(ran), "a member was lost"
        assert ran["total"] == 1, f"the callback ran {ran['total']} times"
        assert r.members.get(5) == [i * i for i in range(N)]
        print(f"\nworkflow chaos on {broker}: {len(done_at_kill)}/{N} members done at the kill, "
              f"{sum(n for k, n in ran.items() if k != 'total') - N} member re-run(s), callback runs: {ran['total']}")
    finally:
        worker.terminate()
        tasks.member.purge()
        tasks.total.purge()


def test_sigkill_between_the_last_members_result_and_the_callback(tmp_path: Path) -> None:
    """The worst moment: the chord's last member has stored its result, the callback is not published yet
    and the member's message is not acknowledged. A test control (order 920: after the result writer, before
    the workflow control) SIGKILLs the worker there, once. The fresh worker gets the member again, and the
    callback is published from its redelivery."""
    suffix = uuid.uuid4().hex[:8]
    module, mark, ledger_path = f"wf_kill_{suffix}", tmp_path / "killed", tmp_path / "ledger.db"
    tasks: Any = import_module_file(tmp_path, module, f"""
        import os, signal, time, types
        from dataclasses import dataclass
        from boostkernel import Control, boost, hookimpl, option
        from boostkernel.plugins import register_plugin
        from boostkernel.testing.chaos import Ledger

        ledger = Ledger({str(ledger_path)!r})


        class KillAfterResult(Control):
            name = "kill_after_result"
            order = 920

            def after(self, ctx):
                if ctx.envelope.args == [3] and ctx.status == "success" and not os.path.exists({str(mark)!r}):
                    open({str(mark)!r}, "w").close()
                    os.kill(os.getpid(), signal.SIGKILL)


        @dataclass(frozen=True, kw_only=True)
        class KillOptions:
            kill_after_result: bool = option(False, "test: SIGKILL the worker after member 3's result is stored")


        @hookimpl
        def register_controls(registry):
            registry.add_control("kill_after_result", "{module}:KillAfterResult", options=KillOptions, order=920,
                                 summary="test")


        plugin = types.ModuleType("kill_after_result_plugin")
        plugin.register_controls = register_controls
        register_plugin(plugin, "test-kill-after-result")

        @boost("wf_kill_members_{suffix}", {_broker_args("sqlite", tmp_path)}, workers=4, results=True,
               workflow=True, kill_after_result=True)
        def member(i: int) -> int:
            time.sleep(1.0 if i == 3 else 0.05)  # member 3 finishes last: its move publishes the callback
            ledger.record(f"m{{i}}")
            return i + 1

        @boost("wf_kill_total_{suffix}", {_broker_args("sqlite", tmp_path)}, workers=1, results=True)
        def total(values: list[int]) -> int:
            ledger.record("total")
            return sum(values)
    """)
    from boostkernel_workflow import chord

    ledger = Ledger(ledger_path)
    r = chord([tasks.member.s(i) for i in range(4)], tasks.total.s()).push()
    worker = WorkerProcess(module, tmp_path, env={"BOOSTKERNEL_DATA_DIR": str(tmp_path)})
    worker.start()
    try:
        assert worker.proc is not None
        worker.proc.wait(30)  # it kills itself right after member 3's result is stored
        assert mark.exists(), worker.log()[-3000:]
        assert r.members.results[3].get(1) == 4, "member 3's result was stored before the kill"
        assert "total" not in ledger.keys() and not r.ready()
        worker.start()
        assert r.get(60) == 1 + 2 + 3 + 4, worker.log()[-3000:]
        ran = ledger.keys()
        assert ran["m3"] == 2, "member 3 ran again after the kill (its message was not acknowledged)"
        assert ran["total"] == 1
    finally:
        worker.terminate()
        from boostkernel.plugins import get_plugins

        get_plugins().unregister_plugin("test-kill-after-result")  # registered by importing the module here
