"""NATS JetStream throughput: boostkernel's `nats` broker side by side with raw nats-py loops.

    uv run python benchmarks/bench_nats.py [-n 20000] [--url nats://127.0.0.1:4222] [--cpu-affinity one]
                                           [--json benchmarks/results/nats.json]

All rows run against the same NATS server in one run, file-storage work-queue streams, no-op tasks, one
consumer process:

* raw nats-py baselines (asyncio, one connection): a ``js.publish`` loop awaiting each PubAck; the same
  with the publishes of 500 messages gathered concurrently (nats-py's way to batch); a consume loop on a
  durable pull consumer, ``fetch(100)`` + JSON decode + ``ack()`` per message (explicit ack after
  processing: at-least-once);
* boostkernel: ``push()`` one by one (each waits for its PubAck), ``push_many()`` (PubAcks gathered),
  the broker layer alone (``fetch(100)`` + ``ack_many``), ``consume()`` with ``solo`` (default prefetch 4,
  and prefetch 100) and with ``threads`` (x16, default prefetch, and prefetch 100): decode, run, ack after run.

With ``--cpu-affinity VALUE`` (e.g. ``one``) each round also measures the ``consume()`` rows in a fresh
process of their own, twice: unpinned, and with ``@boost(..., cpu_affinity=VALUE)`` (the process pinned to
one CPU when consuming starts). They run in their own process because a pinned process stays pinned: the
raw loop and the other rows keep running unpinned in this one, as before.

Target (checked and printed for each consume row): >= 80% of the raw consume loop.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import time
import uuid
from pathlib import Path
from typing import Any

import nats
import nats.errors
import orjson
from _common import (
    Table,
    body,
    broker_layer_rate,
    consume_rate,
    consume_rows,
    counting_booster,
    print_consume_ratios,
    print_ratios,
    rate_in_own_process,
    rounds_args,
    write_json,
)
from nats.js import api

HERE = Path(__file__).resolve().parent
DEFAULT_URL = "nats://127.0.0.1:4222"


async def _raw(url: str, n: int) -> tuple[float, float, float]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    name = f"BENCH_RAW_{uuid.uuid4().hex[:8]}"
    subject = f"benchraw.{name}"
    await js.add_stream(name=name, subjects=[subject], retention=api.RetentionPolicy.WORK_QUEUE,
                        storage=api.StorageType.FILE)
    bodies = [body(i) for i in range(n)]
    m = min(n, 5000)
    t0 = time.perf_counter()
    for b in bodies[:m]:
        await js.publish(subject, b)
    one = m / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(0, n, 500):
        await asyncio.gather(*(js.publish(subject, b) for b in bodies[i:i + 500]))
    batched = n / (time.perf_counter() - t0)
    await js.add_consumer(name, api.ConsumerConfig(durable_name="raw", ack_policy=api.AckPolicy.EXPLICIT,
                                                   ack_wait=30, max_ack_pending=20_000))
    psub = await js.pull_subscribe_bind(durable="raw", stream=name)
    done = 0
    t0 = time.perf_counter()
    while done < n + m:
        try:
            msgs = await psub.fetch(100, timeout=5)
        except nats.errors.TimeoutError:
            break
        for msg in msgs:
            orjson.loads(msg.data)
            await msg.ack()
        done += len(msgs)
    consume = done / (time.perf_counter() - t0)
    await js.delete_stream(name)
    await nc.close()
    return one, batched, consume


def _booster(url: str, concurrency: str, workers: int, counter: list[None], prefetch: int | None = None,
             cpu_affinity: str | None = None) -> Any:
    return counting_booster("nats", url, concurrency, workers, prefetch, counter, cpu_affinity=cpu_affinity)


def _drop(f: Any) -> None:
    f.broker.delete_streams()
    f.broker.close()


def bk_publish(url: str, n: int) -> dict[str, float]:
    f = _booster(url, "solo", 1, [])
    f.push(0)
    f.purge()
    m = min(n, 5000)
    t0 = time.perf_counter()
    for i in range(m):
        f.push(i)
    one = m / (time.perf_counter() - t0)
    assert f.count() == m, f"push lost messages: {f.count()} != {m}"
    f.purge()
    t0 = time.perf_counter()
    f.push_many([(i,) for i in range(n)])
    many = n / (time.perf_counter() - t0)
    assert f.count() == n, f"push_many lost messages: {f.count()} != {n}"
    _drop(f)
    return {"one_by_one": one, "push_many": many}


def bk_broker_layer(url: str, n: int) -> float:
    from boostkernel_nats.broker import NatsBroker

    f = _booster(url, "solo", 1, [])
    f.push_many([(i,) for i in range(n)])
    b = NatsBroker(f.queue, url)
    rate = broker_layer_rate(b, n)
    _drop(f)
    return rate


def bk_consume(url: str, n: int, concurrency: str, workers: int, prefetch: int | None = None,
               cpu_affinity: str | None = None, usage: dict[str, float] | None = None) -> float:
    """``consume()`` of ``n`` queued no-op tasks, tasks/s; ``usage`` receives what the process spent on
    the consuming (``getrusage`` around it): context switches per message (voluntary: a thread blocked,
    e.g. to wait for the GIL; involuntary: preempted) and CPU seconds."""
    import resource

    done: list[None] = []
    f = _booster(url, concurrency, workers, done, prefetch, cpu_affinity)
    f.push_many([(i,) for i in range(n)])
    before = resource.getrusage(resource.RUSAGE_SELF)
    rate = consume_rate(f, n, done)
    after = resource.getrusage(resource.RUSAGE_SELF)
    if usage is not None:
        usage.update(voluntary_switches_per_msg=(after.ru_nvcsw - before.ru_nvcsw) / n,
                     involuntary_switches_per_msg=(after.ru_nivcsw - before.ru_nivcsw) / n,
                     cpu_s=(after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime))
    if cpu_affinity is not None and hasattr(os, "sched_getaffinity"):
        assert len(os.sched_getaffinity(0)) == 1, f"cpu_affinity={cpu_affinity!r} did not pin the process"
    _drop(f)
    return rate


def bk_consume_measured(url: str, n: int, concurrency: str, workers: int, prefetch: int | None = None,
                        cpu_affinity: str | None = None) -> dict[str, float]:
    """:func:`bk_consume`, returning its rate and its ``usage``."""
    usage: dict[str, float] = {}
    rate = bk_consume(url, n, concurrency, workers, prefetch, cpu_affinity, usage)
    return {"rate": rate, **usage}


OWN = "own process"


def own_process_modes(threads: int) -> list[tuple[str, str, int, int | None]]:
    """(name, concurrency, workers, prefetch) of the consume rows measured in a process of their own."""
    return [("solo (default prefetch 4)", "solo", 1, None), ("solo, prefetch 100", "solo", 1, 100),
            (f"threads x{threads} (default prefetch)", "threads", threads, None),
            (f"threads x{threads}, prefetch 100", "threads", threads, 100)]


def own_process_rows(row: Any, url: str, n: int, threads: int, affinity: str,
                     usage: list[dict[str, Any]]) -> None:
    """The consume rows in a fresh process each: unpinned, then with ``cpu_affinity=affinity``; what each
    process spent goes to ``usage``."""
    for name, concurrency, workers, prefetch in own_process_modes(threads):
        for pin in (None, affinity):
            label = f"{OWN}, cpu_affinity={pin!r}: {name}"
            got = rate_in_own_process("bench_nats", "bk_consume_measured", url, n, concurrency, workers, prefetch,
                                      pin)
            row("boostkernel", label, consume=float(got["rate"]))
            print(f"{'':21}({got['voluntary_switches_per_msg']:.2f} voluntary + "
                  f"{got['involuntary_switches_per_msg']:.2f} involuntary context switches per message, "
                  f"{got['cpu_s']:.2f} s CPU)", flush=True)
            usage.append({"mode": label, **got})


def print_own_process_ratios(table: Table, threads: int, affinity: str) -> None:
    raw = table.raw_consume()
    rates = [(f"{OWN}, cpu_affinity={pin!r}, {name}", table.top_consume(f"{OWN}, cpu_affinity={pin!r}: {name}"))
             for name, *_ in own_process_modes(threads) for pin in (None, affinity)]
    print_ratios(raw, rates)
    raw_samples = table.samples("(raw)", "")
    if len(raw_samples) > 1:
        for name, _ in rates:
            own, _, mode = name.partition(", ")
            pin, _, rest = mode.partition(", ")
            ours = table.samples("boostkernel", f"{own}, {pin}: {rest}")
            print(f"  per round, {name}: " + ", ".join(f"{o / r:.0%}" for o, r in zip(ours, raw_samples)))


def main() -> int:
    args = rounds_args(__doc__, n=20_000, url_env="BOOSTKERNEL_NATS_URL", url=DEFAULT_URL, json_name="nats.json",
                       extra=_extra_args)
    n, url = args.n, args.url
    logging.getLogger("boostkernel").setLevel(logging.ERROR)
    table = Table(20, 74 if args.cpu_affinity else 50, keep_best=True)
    row = table.row

    print(f"NATS at {url}; Python {platform.python_version()}; {os.cpu_count()} CPUs "
          f"({len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'} allowed); "
          f"load average {os.getloadavg()[0]:.1f} at start; n={n}; cpu_affinity rows: {args.cpu_affinity!r}")
    table.header()
    usage: list[dict[str, Any]] = []
    for rnd in range(args.repeat):
        print(f"-- round {rnd + 1} of {args.repeat}")
        one, batched, raw_con = asyncio.run(_raw(url, n))
        row("nats-py (raw)", "js.publish loop (await each PubAck)", one)
        row("nats-py (raw)", "js.publish, 500 gathered per batch", batched)
        row("nats-py (raw)", "fetch(100) + decode + ack loop", consume=raw_con)
        pub = bk_publish(url, n)
        row("boostkernel", "push() one by one", pub["one_by_one"])
        row("boostkernel", "push_many() (PubAcks gathered)", pub["push_many"])
        row("boostkernel", "broker layer: fetch(100) + ack_many", consume=bk_broker_layer(url, n))
        consume_rows(row, bk_consume, url, n, args.threads)
        if args.cpu_affinity:
            own_process_rows(row, url, n, args.threads, args.cpu_affinity, usage)
    rows = table.rows
    table.print_best(args.repeat)
    print_consume_ratios(table, args.threads)
    if args.cpu_affinity:
        print_own_process_ratios(table, args.threads, args.cpu_affinity)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    write_json(args.json, {"n": n, "rows": rows, "cpu_affinity": args.cpu_affinity, "own_process_usage": usage,
                           "load_average": os.getloadavg()[0]}, indent=1, say=False)
    return 0


def _extra_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--cpu-affinity", default=None, metavar="one|CPUS",
                    help="also measure the consume rows in a process of their own, unpinned and with "
                         "@boost(cpu_affinity=VALUE), e.g. one")


if __name__ == "__main__":
    raise SystemExit(main())
