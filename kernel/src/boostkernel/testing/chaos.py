"""A small harness for kill -9 tests: a ledger outside the broker and a restartable worker process.

The task under test records ``(key, pid)`` in a :class:`Ledger` (a SQLite WAL file, committed before the
task returns). After the run, :meth:`Ledger.check` compares what ran against what was published, as
Jepsen's total-queue checker does: ``lost`` must be empty; ``duplicated`` is reported.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

_local = threading.local()


class Ledger:
    """Append-only record of executions, safe from many threads and processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        with sqlite3.connect(self.path, timeout=60) as c:
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("CREATE TABLE IF NOT EXISTS ran (key TEXT NOT NULL, pid INTEGER, at REAL)")

    def _conn(self) -> sqlite3.Connection:
        conns = getattr(_local, "conns", None)
        if conns is None:
            conns = _local.conns = {}
        c = conns.get(self.path)
        if c is None:
            c = conns[self.path] = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            c.execute("PRAGMA synchronous=NORMAL")
        return c

    def record(self, key: Any) -> None:
        """Call from the task, last thing before returning."""
        self._conn().execute("INSERT INTO ran (key, pid, at) VALUES (?,?,?)", (str(key), os.getpid(), time.time()))

    def keys(self) -> Counter[str]:
        with sqlite3.connect(self.path, timeout=60) as c:
            return Counter(r[0] for r in c.execute("SELECT key FROM ran"))

    def times(self) -> list[float]:
        """Completion times (Unix seconds) of every recorded execution, sorted."""
        with sqlite3.connect(self.path, timeout=60) as c:
            return sorted(r[0] for r in c.execute("SELECT at FROM ran"))

    def longest_stall(self, since: float | None = None) -> float:
        """The longest time (s) in which no task completed, from ``since`` (e.g. the first kill) to the last
        completion. After a kill -9 it measures how long the dead worker's messages took to run again."""
        times = self.times()
        if since is not None:
            times = [since] + [t for t in times if t >= since]
        return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)

    def check(self, published: Iterable[Any], since: float | None = None) -> Report:
        ran = self.keys()
        expected = {str(k) for k in published}
        return Report(
            published=len(expected),
            lost=sorted(expected - set(ran)),
            unexpected=sorted(set(ran) - expected),
            duplicated={k: n for k, n in ran.items() if n > 1},
            executions=sum(ran.values()),
            longest_stall=self.longest_stall(since),
        )


@dataclass
class Report:
    published: int
    lost: list[str]
    unexpected: list[str]
    duplicated: dict[str, int]
    executions: int
    kills: int = 0
    notes: list[str] = field(default_factory=list)
    longest_stall: float = 0.0
    """Seconds of the longest stretch in which no task completed (see :meth:`Ledger.longest_stall`)."""

    def summary(self) -> str:
        extra = sum(n - 1 for n in self.duplicated.values())
        return (f"published={self.published} executions={self.executions} lost={len(self.lost)} "
                f"unexpected={len(self.unexpected)} duplicated_keys={len(self.duplicated)} "
                f"extra_runs={extra} kills={self.kills} longest_stall={self.longest_stall:.1f}s")


class WorkerProcess:
    """``boostkernel worker MODULE`` in a subprocess that can be SIGKILLed and restarted."""

    def __init__(self, module: str, cwd: str | Path, env: dict[str, str] | None = None,
                 args: Iterable[str] = (), log_path: str | Path | None = None) -> None:
        self.module, self.cwd = module, str(cwd)
        self.env = {**os.environ, "PYTHONPATH": str(cwd) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                    **(env or {})}
        self.args = list(args)
        self.log_path = str(log_path or Path(cwd) / f"{module}.worker.log")
        self.proc: subprocess.Popen[bytes] | None = None
        self.pids: list[int] = []

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen([sys.executable, "-m", "boostkernel", "worker", self.module, *self.args],
                                     cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.pids.append(self.proc.pid)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def terminate(self, timeout: float = 60) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def wait_ready(self, timeout: float = 30) -> bool:
        """Wait until the current process logs that it is consuming (its signal handlers are set)."""
        assert self.proc is not None
        marker = f"worker {self.proc.pid} consuming"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker in self.log():
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""


def kill_loop(worker: WorkerProcess, every: float, duration: float, restart_after: float = 0.3) -> int:
    """SIGKILL ``worker`` every ``every`` seconds for ``duration`` seconds, restarting it each time."""
    kills = 0
    end = time.monotonic() + duration
    while time.monotonic() < end:
        time.sleep(every)
        worker.kill()
        kills += 1
        time.sleep(restart_after)
        worker.start()
    return kills


class ChaosContract:
    """The repeated kill -9 scenario, as a contract mixin: override one fixture, ``chaos_boost_options``.

    It returns the ``@boost`` keyword arguments that put a task on the broker under test (``broker``,
    ``broker_url``, ``broker_options`` with short intervals …), as literals (they are written into a
    generated task module). The test publishes ``chaos_tasks`` tasks, runs ``boostkernel worker`` in a
    subprocess, SIGKILLs and restarts it ``chaos_kills`` times, then checks against a ledger outside the
    broker that every task ran (duplicates are reported, not failed), that nothing is left in flight
    or dead-lettered, and prints the longest stall in which no task completed.
    """

    #: Its recovery bound is measured in seconds: the suite runs it alone, after the parallel run (.ci/run).
    pytestmark = [pytest.mark.serial]


    chaos_tasks: int = 400
    chaos_kills: int = 4
    chaos_kill_every: float = 1.5
    #: Threads of the worker process.
    chaos_workers: int = 8
    #: Seconds the drain after the last kill may take.
    chaos_drain_timeout: float = 120.0
    #: Where set: after each kill, the messages the killed process held must be back in the queue within
    #: this many seconds (brokers that recover by heartbeat/lease); needs :meth:`chaos_held_by`.
    chaos_recovery_bound: float | None = None

    def chaos_held_by(self, broker: Any, pid: int) -> int:
        """How many messages worker process ``pid`` holds now (``broker``: a broker of the chaos queue,
        made in this process). Override it where ``chaos_recovery_bound`` is set."""
        raise NotImplementedError("set chaos_recovery_bound only with a chaos_held_by(broker, pid) override")

    @pytest.fixture
    def chaos_boost_options(self) -> dict[str, Any]:
        raise NotImplementedError("override the 'chaos_boost_options' fixture: the @boost keyword arguments "
                                  "that select your broker, e.g. {'broker': 'mybroker', 'broker_url': ...}")

    def test_repeated_kill_9_loses_nothing(self, tmp_path: Path, chaos_boost_options: dict[str, Any]) -> None:
        import uuid

        from .helpers import import_module_file, wait_until

        queue, mod = f"chaos_{uuid.uuid4().hex[:10]}", f"chaos_tasks_{uuid.uuid4().hex[:8]}"
        ledger_path = tmp_path / "ledger.db"
        options = {"workers": self.chaos_workers, "max_deliveries": 50, **chaos_boost_options}
        tasks = import_module_file(tmp_path, mod, f"""
            import random, time
            from boostkernel import boost
            from boostkernel.testing.chaos import Ledger

            ledger = Ledger({str(ledger_path)!r})

            @boost({queue!r}, **{options!r})
            def work(i: int) -> None:
                time.sleep(random.uniform(0.05, 0.2))
                ledger.record(i)
        """)
        ledger = Ledger(ledger_path)
        n = self.chaos_tasks
        tasks.work.push_many([(i,) for i in range(n)])
        worker = WorkerProcess(mod, tmp_path)
        monitor = _RecoveryMonitor(self, tasks.work.make_broker(), worker) if self.chaos_recovery_bound else None
        worker.start()
        try:
            assert worker.wait_ready(), worker.log()[-3000:]
            kills = kill_loop(worker, every=self.chaos_kill_every,
                              duration=self.chaos_kill_every * self.chaos_kills + 0.1)
            assert wait_until(lambda: len(ledger.keys()) >= n, timeout=self.chaos_drain_timeout, interval=0.2), \
                f"{n - len(ledger.keys())} of {n} tasks never ran\n{worker.log()[-3000:]}"
            if monitor is not None:
                assert self.chaos_recovery_bound is not None
                assert wait_until(monitor.done, timeout=self.chaos_recovery_bound + 5, interval=0.2)
            if tasks.work.broker_class.capabilities.count:
                # every task ran, but a redelivered copy of one that ran just before a kill may still wait in
                # the queue (it runs again: at-least-once); the worker drains it before it is stopped
                probe = tasks.work.make_broker()
                try:
                    assert wait_until(lambda: probe.count() == 0, timeout=self.chaos_drain_timeout, interval=0.2), \
                        f"{probe.count()} message(s) stayed in the queue after every task ran"
                finally:
                    probe.close()
            assert worker.wait_ready()
        finally:
            if monitor is not None:
                monitor.close()
            code = worker.terminate()
        report = ledger.check(range(n))
        report.kills = kills
        with sqlite3.connect(ledger.path) as c:
            times = sorted(r[0] for r in c.execute("SELECT at FROM ran"))
        stall = max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)
        recovery = f" recovery after kill: max {monitor.slowest():.1f}s" if monitor is not None else ""
        print(f"\nchaos {options.get('broker')}: {report.summary()} longest_stall={stall:.1f}s{recovery}")
        assert report.lost == [] and report.unexpected == [], report.summary()
        if monitor is not None:
            assert monitor.hit_in_flight, "no kill hit a message in flight: nothing was recovered"
            assert monitor.slowest() <= (self.chaos_recovery_bound or 0), f"recovery took {monitor.slowest():.1f}s"
        assert code == 0, f"the worker did not stop cleanly on SIGTERM (exit {code})"
        broker = tasks.work.make_broker()
        try:
            if broker.capabilities.dead_letter:
                assert broker.dead_letters() == [], "a task was dead-lettered by kill -9 alone"
            if broker.capabilities.count:
                assert broker.count() == 0, f"{broker.count()} message(s) left in the queue after the worker stopped"
            in_flight = getattr(broker, "in_flight", None)
            if in_flight is not None:
                assert in_flight() == 0, "no orphaned in-flight messages"
        finally:
            if broker.capabilities.purge:
                broker.purge()
            broker.close()


class _RecoveryMonitor:
    """Watches, after each SIGKILL of ``worker``, how long the killed process still holds messages."""

    def __init__(self, contract: ChaosContract, broker: Any, worker: WorkerProcess) -> None:
        self.contract, self.broker = contract, broker
        self.killed: dict[int, float] = {}
        self.recovered: dict[int, float] = {}
        self.hit_in_flight = False
        self._stop = threading.Event()
        real_kill = worker.kill

        def kill_and_note() -> None:
            pid = worker.proc.pid if worker.proc is not None else 0
            real_kill()
            self.killed[pid] = time.monotonic()

        worker.kill = kill_and_note  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self._run, daemon=True, name="chaos-recovery-monitor")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid, t_kill in list(self.killed.items()):
                if pid in self.recovered:
                    continue
                try:
                    held = self.contract.chaos_held_by(self.broker, pid)
                except Exception:  # noqa: BLE001 - a failed probe is retried at the next tick
                    continue
                if held:
                    self.hit_in_flight = True
                else:
                    self.recovered[pid] = time.monotonic() - t_kill
            self._stop.wait(0.1)

    def done(self) -> bool:
        return len(self.recovered) == len(self.killed)

    def slowest(self) -> float:
        return max(self.recovered.values(), default=0.0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.broker.close()
