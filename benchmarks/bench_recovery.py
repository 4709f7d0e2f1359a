"""Kill-to-redelivery at default settings: how long a kill -9 stalls a queue, per broker.

One ``boostkernel worker`` (4 threads, default prefetch 8) runs 12 tasks of 0.5 s. Right after the first
tasks complete it holds every remaining message (4 running, 4 prefetched); it is SIGKILLed and restarted
0.3 s later. Nothing else is queued, so no task can complete until the broker gives the dead worker's
messages to the new one: the longest stall in which no task completes (``Report.longest_stall`` of the
chaos ledger, counted from the kill) is the recovery time at defaults plus at most one task (0.5 s), or
the replacement worker's start-up when that is longer (printed too: on a loaded machine it takes seconds).

    uv run python benchmarks/bench_recovery.py                    # every broker whose service is up
    uv run python benchmarks/bench_recovery.py sqlite redis       # some of them

Brokers run with their default options (only the URL is given). Figures are noisy on a loaded machine.
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

BROKERS = {  # broker name -> (service, URL)
    "sqlite": (None, None),
    "redis": ("redis", "redis"),
    "redis-streams": ("redis", "redis"),
    "rabbitmq": ("rabbitmq", "rabbitmq"),
    "kafka": ("kafka", "kafka"),
    "confluent-kafka": ("kafka", "kafka"),
    "kombu": ("rabbitmq", "kombu"),
}
N, TASK_SECONDS, WORKERS = 12, 0.5, 4


def measure(broker: str, tmp: Path) -> tuple[float, float, str]:
    service, url_kind = BROKERS[broker]
    if url_kind is None:
        url = f"sqlite:///{tmp}/queue.db"
    elif url_kind == "kombu":
        url = "kombu+" + service_url("rabbitmq").replace("/%2F", "//")
    else:
        url = service_url(url_kind)
    queue = f"recovery_{broker.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
    mod = f"recovery_{uuid.uuid4().hex[:8]}"
    (tmp / f"{mod}.py").write_text(textwrap.dedent(f"""
        import time
        from boostkernel import boost
        from boostkernel.testing.chaos import Ledger

        ledger = Ledger({str(tmp / 'ledger.db')!r})

        @boost({queue!r}, broker={broker!r}, broker_url={url!r}, workers={WORKERS})
        def work(i: int) -> None:
            time.sleep({TASK_SECONDS})
            ledger.record(i)
    """))
    sys.path.insert(0, str(tmp))
    try:
        import importlib

        tasks = importlib.import_module(mod)
    finally:
        sys.path.remove(str(tmp))
    ledger = Ledger(tmp / "ledger.db")
    tasks.work.push_many([(i,) for i in range(N)])
    worker = WorkerProcess(mod, tmp)
    worker.start()
    try:
        deadline = time.monotonic() + 120
        while not ledger.keys() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not ledger.keys():
            return float("nan"), float("nan"), "no task completed before the kill: " + worker.log()[-500:]
        since = time.time()
        time.sleep(0.2)
        worker.kill()
        time.sleep(0.3)
        worker.start()
        worker.wait_ready(120)
        ready = time.time() - since
        deadline = time.monotonic() + 300
        while len(ledger.keys()) < N and time.monotonic() < deadline:
            time.sleep(0.05)
        report = ledger.check(range(N), since=since)
        return report.longest_stall, ready, report.summary()
    finally:
        worker.terminate()
        try:
            b = tasks.work.make_broker()
            b.purge()
            b.close()
        except Exception:  # noqa: BLE001,S110 - best-effort cleanup of the measuring queue
            pass


def main(names: list[str]) -> None:
    print("| broker | longest stall after kill -9 (s) | new worker consuming after (s) | run |")
    print("|---|---|---|---|")
    for name in names or list(BROKERS):
        service = BROKERS[name][0]
        if service is not None and not service_reachable(service):
            print(f"| {name} | - | - | {service} not reachable |")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            stall, ready, summary = measure(name, Path(tmp))
        print(f"| {name} | {stall:.1f} | {ready:.1f} | {summary} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
