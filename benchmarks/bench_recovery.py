"""Kill-to-redelivery at default settings: how long a kill -9 keeps a dead worker's messages from running.

Scenario (one run per broker, default broker options, only the URL given): 60 tasks of 3 s. Worker A
(``boostkernel worker``, 4 threads, default prefetch 8) starts and holds 12 of them (4 running, 8
prefetched). Worker B (40 threads) is started next; once it consumes it takes the rest of the queue and
runs it at once, so it is never busy when A's messages come back. A is then SIGKILLed. From then on the
only messages B can start are the ones A held: the time from the kill to B's first task start is the
broker's kill-to-redelivery time. The task writes a start and an end record into two ledgers outside the
broker (``boostkernel.testing.chaos.Ledger``); the longest stall in which no task starts
(``Ledger.longest_stall``, counted from the kill) is that figure, and every task must finish
(``lost=0``).

    uv run python benchmarks/bench_recovery.py                    # every broker whose service is up
    uv run python benchmarks/bench_recovery.py sqlite redis       # some of them

Worker B is started before the kill because a Python worker's start-up alone takes seconds on a loaded
machine; with a replacement started after the kill, add that start-up time.
"""

from __future__ import annotations

import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

from boostkernel.testing.chaos import Ledger, WorkerProcess
from boostkernel.testing.helpers import service_reachable, service_url

BROKERS = {  # broker name -> service it needs
    "sqlite": None,
    "redis": "redis",
    "redis-streams": "redis",
    "rabbitmq": "rabbitmq",
    "kafka": "kafka",
    "confluent-kafka": "kafka",
    "kombu": "rabbitmq",
    "kombu-redis": "redis",  # kombu's redis transport (the kombu broker's lease on its unacked messages)
}
N, TASK_SECONDS = 60, 3.0


def _url(broker: str, tmp: Path) -> str:
    if broker == "sqlite":
        return f"sqlite:///{tmp}/queue.db"
    if broker == "kombu":
        return "kombu+" + service_url("rabbitmq").replace("/%2F", "//")
    if broker == "kombu-redis":
        return "kombu+" + service_url("redis")
    if broker.startswith("redis"):
        return service_url("redis")
    return service_url("kafka" if "kafka" in broker else broker)


def measure(broker: str, tmp: Path) -> tuple[float, str]:
    url = _url(broker, tmp)
    boost_broker = "kombu" if broker.startswith("kombu") else broker
    queue = f"recovery_{broker.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
    mod = f"recovery_{uuid.uuid4().hex[:8]}"
    (tmp / f"{mod}.py").write_text(textwrap.dedent(f"""
        import os, time
        from boostkernel import boost
        from boostkernel.testing.chaos import Ledger

        starts, ends = Ledger({str(tmp / 'starts.db')!r}), Ledger({str(tmp / 'ends.db')!r})

        @boost({queue!r}, broker={boost_broker!r}, broker_url={url!r}, workers=int(os.environ.get("WORKERS", "4")))
        def work(i: int) -> None:
            starts.record(i)
            time.sleep({TASK_SECONDS})
            ends.record(i)
    """))
    sys.path.insert(0, str(tmp))
    try:
        import importlib

        tasks = importlib.import_module(mod)
    finally:
        sys.path.remove(str(tmp))
    starts, ends = Ledger(tmp / "starts.db"), Ledger(tmp / "ends.db")
    tasks.work.push_many([(i,) for i in range(N)])
    a = WorkerProcess(mod, tmp, env={"WORKERS": "4"}, log_path=tmp / "a.log")
    b = WorkerProcess(mod, tmp, env={"WORKERS": "40"}, log_path=tmp / "b.log")
    a.start()
    try:
        if not a.wait_ready(120):
            return float("nan"), "worker A did not start: " + a.log()[-500:]
        b.start()
        if not b.wait_ready(120):
            return float("nan"), "worker B did not start: " + b.log()[-500:]
        n = len(starts.keys())
        deadline = time.monotonic() + 30  # B takes what is left in the queue and starts it
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if len(starts.keys()) == n:
                break
            n = len(starts.keys())
        unstarted = N - n  # A's prefetched messages (B took the rest of the queue)
        killed_at = time.time()
        a.kill()
        deadline = time.monotonic() + 300
        while len(ends.keys()) < N and time.monotonic() < deadline:
            time.sleep(0.1)
        report = ends.check(range(N), since=killed_at)
        stall = starts.longest_stall(since=killed_at)
        return stall, f"{report.summary()}, {unstarted} unstarted at the kill"
    finally:
        for w in (a, b):
            w.terminate()
        try:
            br = tasks.work.make_broker()
            br.purge()
            br.close()
        except Exception:  # noqa: BLE001,S110 - best-effort cleanup of the measuring queue
            pass


def main(names: list[str]) -> None:
    print("| broker | kill -9 to redelivery (s) | run |")
    print("|---|---|---|")
    for name in names or list(BROKERS):
        service = BROKERS[name]
        if service is not None and not service_reachable(service):
            print(f"| {name} | - | {service} not reachable |")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            stall, summary = measure(name, Path(tmp))
        print(f"| {name} | {stall:.1f} | {summary} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
