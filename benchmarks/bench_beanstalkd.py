"""beanstalkd throughput: boostkernel's `beanstalkd` broker side by side with raw greenstalk loops.

    uv run python benchmarks/bench_beanstalkd.py [-n 20000] [--url beanstalk://127.0.0.1:11300]
                                                 [--json benchmarks/results/beanstalkd.json]

All rows run against the same beanstalkd in one run, no-op tasks, one consumer process:

* raw greenstalk baselines: a ``put`` loop (one round trip each, as greenstalk offers no batching); a
  consume loop ``reserve`` + JSON decode + ``delete`` per job (at-least-once: delete after processing);
* boostkernel: ``push()`` one by one, ``push_many()`` (pipelined puts), the broker layer alone
  (``fetch(100)`` + ``ack_many``), ``consume()`` with ``solo`` (default prefetch 4, and prefetch 100)
  and with ``threads`` (x16, default prefetch, and prefetch 100): decode, run, delete after run.

Target (checked and printed for each consume row): >= 80% of the raw consume loop.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import greenstalk
import orjson

HERE = Path(__file__).resolve().parent
DEFAULT_URL = "beanstalk://127.0.0.1:11300"


def body(i: int) -> bytes:
    return orjson.dumps({"v": 1, "id": str(uuid.uuid4()), "queue": "raw", "args": [i], "kwargs": {},
                         "published_at": time.time(), "attempt": 0})


def _addr(url: str) -> tuple[str, int]:
    u = urlparse(url)
    return u.hostname or "127.0.0.1", u.port or 11300


def raw_publish(url: str, n: int) -> tuple[float, str]:
    tube = f"bench_raw_{uuid.uuid4().hex[:8]}"
    c: greenstalk.Client[bytes] = greenstalk.Client(_addr(url), encoding=None, use=tube)
    bodies = [body(i) for i in range(n)]
    t0 = time.perf_counter()
    for b in bodies:
        c.put(b, ttr=60)
    dt = time.perf_counter() - t0
    c.close()
    return n / dt, tube


def raw_consume(url: str, tube: str, n: int) -> float:
    c: greenstalk.Client[bytes] = greenstalk.Client(_addr(url), encoding=None, watch=tube)
    done = 0
    t0 = time.perf_counter()
    while done < n:
        job = c.reserve(timeout=5)
        orjson.loads(job.body)
        c.delete(job)
        done += 1
    dt = time.perf_counter() - t0
    c.close()
    return done / dt


def _booster(url: str, concurrency: str, workers: int, counter: list[None], prefetch: int | None = None) -> Any:
    from boostkernel import boost

    q = f"bench_{concurrency}_{uuid.uuid4().hex[:8]}"

    @boost(q, broker="beanstalkd", broker_url=url, concurrency=concurrency, workers=workers, prefetch=prefetch)
    def noop(i: int) -> None:
        counter.append(None)

    return noop


def bk_publish(url: str, n: int) -> dict[str, float]:
    f = _booster(url, "solo", 1, [])
    f.push(0)
    f.purge()
    m = min(n, 10_000)
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
    f.purge()
    f.broker.close()
    return {"one_by_one": one, "push_many": many}


def bk_broker_layer(url: str, n: int) -> float:
    from boostkernel_beanstalkd.broker import BeanstalkdBroker

    f = _booster(url, "solo", 1, [])
    f.push_many([(i,) for i in range(n)])
    b = BeanstalkdBroker(f.queue, url)
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
    f.broker.close()
    return done / dt


def bk_consume(url: str, n: int, concurrency: str, workers: int, prefetch: int | None = None) -> float:
    done: list[None] = []
    f = _booster(url, concurrency, workers, done, prefetch)
    f.purge()
    f.push_many([(i,) for i in range(n)])
    t0 = time.perf_counter()
    f.consume()
    while len(done) < n:
        time.sleep(0.002)
    dt = time.perf_counter() - t0
    f.stop(10)
    f.purge()
    f.broker.close()
    return n / dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=20_000, help="messages per measurement (default 20000)")
    ap.add_argument("--url", default=os.environ.get("BOOSTKERNEL_BEANSTALKD_URL", DEFAULT_URL))
    ap.add_argument("--threads", type=int, default=16, help="workers of the threads consume row")
    ap.add_argument("--repeat", type=int, default=2, help="rounds (raw and boostkernel rows interleaved); best of each")
    ap.add_argument("--json", default=str(HERE / "results" / "beanstalkd.json"), help="where to write the JSON")
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

    c: greenstalk.Client[bytes] = greenstalk.Client(_addr(url), encoding=None)
    version = c.stats().get("version", "?")
    c.close()
    print(f"beanstalkd {version} at {url}; Python {platform.python_version()}; {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.1f} at start; n={n}")
    print(f"{'framework':<20} {'mode':<50} {'publish/s':>12} {'consume/s':>12}")
    for rnd in range(args.repeat):
        print(f"-- round {rnd + 1} of {args.repeat}")
        raw_pub, tube = raw_publish(url, n)
        row("greenstalk (raw)", "put loop", raw_pub)
        raw_con = raw_consume(url, tube, n)
        row("greenstalk (raw)", "reserve + decode + delete loop", consume=raw_con)
        pub = bk_publish(url, n)
        row("boostkernel", "push() one by one", pub["one_by_one"])
        row("boostkernel", "push_many() (pipelined puts)", pub["push_many"])
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
    Path(args.json).write_text(json.dumps({"server": f"beanstalkd {version}", "n": n, "rows": rows,
                                           "load_average": os.getloadavg()[0]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
