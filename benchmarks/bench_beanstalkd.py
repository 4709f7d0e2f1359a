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
from _common import (
    Table,
    body,
    broker_layer_rate,
    consume_rate,
    consume_rows,
    counting_booster,
    print_consume_ratios,
    rounds_args,
    write_json,
)

HERE = Path(__file__).resolve().parent
DEFAULT_URL = "beanstalk://127.0.0.1:11300"


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
    return counting_booster("beanstalkd", url, concurrency, workers, prefetch, counter)


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
    rate = broker_layer_rate(b, n)
    f.broker.close()
    return rate


def bk_consume(url: str, n: int, concurrency: str, workers: int, prefetch: int | None = None) -> float:
    done: list[None] = []
    f = _booster(url, concurrency, workers, done, prefetch)
    f.purge()
    f.push_many([(i,) for i in range(n)])
    rate = consume_rate(f, n, done)
    f.purge()
    f.broker.close()
    return rate


def main() -> int:
    args = rounds_args(__doc__, n=20_000, url_env="BOOSTKERNEL_BEANSTALKD_URL", url=DEFAULT_URL, json_name="beanstalkd.json")
    n, url = args.n, args.url
    logging.getLogger("boostkernel").setLevel(logging.ERROR)
    table = Table(20, 50, keep_best=True)
    row = table.row

    c: greenstalk.Client[bytes] = greenstalk.Client(_addr(url), encoding=None)
    version = c.stats().get("version", "?")
    c.close()
    print(f"beanstalkd {version} at {url}; Python {platform.python_version()}; {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.1f} at start; n={n}")
    table.header()
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
        consume_rows(row, bk_consume, url, n, args.threads)
    rows = table.rows
    table.print_best(args.repeat)
    print_consume_ratios(table, args.threads)
    write_json(args.json, {"server": f"beanstalkd {version}", "n": n, "rows": rows,
                           "load_average": os.getloadavg()[0]}, indent=1, say=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
