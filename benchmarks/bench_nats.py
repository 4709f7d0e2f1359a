"""NATS JetStream throughput: boostkernel's `nats` broker side by side with raw nats-py loops.

    uv run python benchmarks/bench_nats.py [-n 20000] [--url nats://127.0.0.1:4222]
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

Target (checked and printed for each consume row): >= 80% of the raw consume loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
from nats.js import api

HERE = Path(__file__).resolve().parent
DEFAULT_URL = "nats://127.0.0.1:4222"


def body(i: int) -> bytes:
    return orjson.dumps({"v": 1, "id": str(uuid.uuid4()), "queue": "raw", "args": [i], "kwargs": {},
                         "published_at": time.time(), "attempt": 0})


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


def _booster(url: str, concurrency: str, workers: int, counter: list[None], prefetch: int | None = None) -> Any:
    from boostkernel import boost

    q = f"bench_{concurrency}_{uuid.uuid4().hex[:8]}"

    @boost(q, broker="nats", broker_url=url, concurrency=concurrency, workers=workers, prefetch=prefetch)
    def noop(i: int) -> None:
        counter.append(None)

    return noop


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
    done = 0
    t0 = time.perf_counter()
    while done < n:
        got = b.fetch(100, 2.0)
        if not got:
            break
        for d in got:
            orjson.loads(d.body)
        b.ack_many(got)
        done += len(got)
    dt = time.perf_counter() - t0
    b.close()
    _drop(f)
    return done / dt


def bk_consume(url: str, n: int, concurrency: str, workers: int, prefetch: int | None = None) -> float:
    done: list[None] = []
    f = _booster(url, concurrency, workers, done, prefetch)
    f.push_many([(i,) for i in range(n)])
    t0 = time.perf_counter()
    f.consume()
    while len(done) < n:
        time.sleep(0.002)
    dt = time.perf_counter() - t0
    f.stop(10)
    _drop(f)
    return n / dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=20_000, help="messages per measurement (default 20000)")
    ap.add_argument("--url", default=os.environ.get("BOOSTKERNEL_NATS_URL", DEFAULT_URL))
    ap.add_argument("--threads", type=int, default=16, help="workers of the threads consume row")
    ap.add_argument("--repeat", type=int, default=2, help="rounds (raw and boostkernel rows interleaved); best of each")
    ap.add_argument("--json", default=str(HERE / "results" / "nats.json"), help="where to write the JSON")
    args = ap.parse_args()
    n, url = args.n, args.url
    logging.getLogger("boostkernel").setLevel(logging.ERROR)
    best: dict[tuple[str, str], dict[str, Any]] = {}

    def row(name: str, mode: str, publish: float | None = None, consume: float | None = None) -> None:
        r = best.setdefault((name, mode), {"framework": name, "mode": mode, "publish_per_s": None,
                                           "consume_per_s": None})
        for k, v in (("publish_per_s", publish), ("consume_per_s", consume)):
            if v is not None and (r[k] is None or v > r[k]):
                r[k] = v
        pub = f"{publish:>12,.0f}" if publish else f"{'':>12}"
        con = f"{consume:>12,.0f}" if consume else f"{'':>12}"
        print(f"{name:<20} {mode:<50} {pub} {con}", flush=True)

    print(f"NATS at {url}; Python {platform.python_version()}; {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.1f} at start; n={n}")
    print(f"{'framework':<20} {'mode':<50} {'publish/s':>12} {'consume/s':>12}")
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
        solo_default = bk_consume(url, n, "solo", 1)
        row("boostkernel", "consume(), solo (default prefetch 4)", consume=solo_default)
        solo = bk_consume(url, n, "solo", 1, 100)
        row("boostkernel", "consume(), solo, prefetch 100", consume=solo)
        threads = bk_consume(url, n, "threads", args.threads)
        row("boostkernel", f"consume(), threads x{args.threads} (default prefetch)", consume=threads)
        threads100 = bk_consume(url, n, "threads", args.threads, 100)
        row("boostkernel", f"consume(), threads x{args.threads}, prefetch 100", consume=threads100)
    rows = list(best.values())
    print(f"\nbest of {args.repeat} round(s):")
    for r in rows:
        pub = f"{r['publish_per_s']:>12,.0f}" if r["publish_per_s"] else f"{'':>12}"
        con = f"{r['consume_per_s']:>12,.0f}" if r["consume_per_s"] else f"{'':>12}"
        print(f"{r['framework']:<20} {r['mode']:<50} {pub} {con}")

    def top(mode_start: str) -> float:
        return max(float(r["consume_per_s"] or 0) for r in rows if r["mode"].startswith(mode_start))

    raw_con = max(float(r["consume_per_s"] or 0) for r in rows if "(raw)" in r["framework"])
    solo_default, solo = top("consume(), solo (default"), top("consume(), solo, prefetch")
    threads, threads100 = top(f"consume(), threads x{args.threads} (default"), top(f"consume(), threads x{args.threads}, prefetch")
    print()
    for name, v in (("solo, default prefetch", solo_default), ("solo, prefetch 100", solo),
                    (f"threads x{args.threads}, default prefetch", threads),
                    (f"threads x{args.threads}, prefetch 100", threads100)):
        print(f"consume {name} / raw loop: {v / raw_con:.0%} (target >= 80%): {'OK' if v >= 0.8 * raw_con else 'below'}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"n": n, "rows": rows,
                                           "load_average": os.getloadavg()[0]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
