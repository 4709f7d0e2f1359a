"""STOMP (ActiveMQ) throughput: boostkernel's `stomp` broker side by side with raw stomp.py loops.

    uv run python benchmarks/bench_stomp.py -n 5000 --repeat 3   # --threads 16 --url stomp://127.0.0.1:61613
                                                                   # --json benchmarks/results/stomp.json

All rows run against the same ActiveMQ (``.ci/services.d/activemq.sh``) in one process, with no-op tasks and
persistent messages. An unmeasured raw publish and consume of ``min(n, 1000)`` messages comes first (a
freshly started ActiveMQ is slow until its JIT has warmed up); then each of the ``--repeat`` rounds measures, one after the other (raw and boostkernel rows
interleaved, so a change of load on a shared machine hits both):

* raw stomp.py baselines (``Connection12``, bytes bodies): a ``send`` loop with a ``receipt`` on each
  frame (one round trip each: the guarantee of ``push()``; ``min(n, 1000)`` messages); ``n`` messages sent
  in transactions of 500 with a receipt on each ``COMMIT`` (the guarantee of ``push_many()``); a consume
  loop with ``ack:client-individual``, ``activemq.prefetchSize`` 100, an ``ACK`` per message after decoding
  its JSON body (the guarantee of ``consume()``: ack after the task), draining both;
* boostkernel: ``push()`` one by one, ``push_many()``, the broker layer alone (``fetch(100)`` + ``ack_many``),
  ``consume()`` with ``solo`` and with ``threads`` (x16), each at the booster's default prefetch and at
  prefetch 100 (the stomp broker's server window is at least 100 messages either way).

The CPU time of the benchmark process per consumed message (client library, broker layer and kernel; not
ActiveMQ's) is printed for the consume rows too: when it is well under a CPU's worth, the server bounds the
rate. The medians over the rounds are printed, then each consume row's median as a share of the median raw
consume loop and the same share round by round. Targets (checked and printed): each consume row (solo and
threads, default prefetch and prefetch 100) >= 80% of the raw consume loop (medians).
"""

from __future__ import annotations

import logging
import os
import platform
import resource
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import orjson
import stomp
from _common import (
    Table,
    body,
    broker_layer_rate,
    consume_rate,
    consume_rows,
    counting_booster,
    print_consume_ratios,
    print_targets,
    rounds_args,
    write_json,
)

HERE = Path(__file__).resolve().parent
DEFAULT_URL = "stomp://127.0.0.1:61613"
#: CPU time of this process (all its threads: client library, broker layer, kernel) per consumed message,
#: in microseconds, by row, round by round. The rest of a message's cost is ActiveMQ's (another process).
CPU_US: dict[str, list[float]] = {}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _cpu_row(name: str, c0: float, n: int) -> None:
    CPU_US.setdefault(name, []).append((_cpu() - c0) * 1e6 / max(1, n))


class _Receipts(stomp.ConnectionListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.got: set[str] = set()
        self.messages: list[Any] = []
        self.on_msg: Any = None

    def on_receipt(self, frame: Any) -> None:
        with self.cond:
            self.got.add(frame.headers["receipt-id"])
            self.cond.notify_all()

    def on_message(self, frame: Any) -> None:
        if self.on_msg is not None:
            self.on_msg(frame)

    def wait(self, rid: str) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: rid in self.got, 30):
                raise RuntimeError("no receipt")
            self.got.discard(rid)


def _conn(url: str) -> tuple[Any, _Receipts]:
    u = urlparse(url)
    c = stomp.Connection12([(u.hostname, u.port or 61613)], auto_decode=False, heartbeats=(10000, 10000))
    lst = _Receipts()
    c.set_listener("r", lst)
    c.connect(u.username, u.password, wait=True)
    return c, lst


def raw_publish(url: str, q: str, n: int, batch: int) -> float:
    c, lst = _conn(url)
    dest = "/queue/" + q
    t0 = time.perf_counter()
    if batch <= 1:
        for i in range(n):
            rid = f"r{i}"
            c.send(dest, body(i), headers={"persistent": "true"}, receipt=rid)
            lst.wait(rid)
    else:
        for start in range(0, n, batch):
            tx = uuid.uuid4().hex
            c.begin(tx)
            for i in range(start, min(n, start + batch)):
                c.send(dest, body(i), headers={"persistent": "true", "transaction": tx})
            rid = f"c{start}"
            c.commit(tx, headers={"receipt": rid})
            lst.wait(rid)
    dt = time.perf_counter() - t0
    c.disconnect()
    return n / dt


def raw_consume(url: str, q: str, n: int) -> float:
    c, lst = _conn(url)
    done = threading.Event()
    count = [0]

    def on_msg(frame: Any) -> None:
        orjson.loads(frame.body)
        c.ack(frame.headers["ack"])
        count[0] += 1
        if count[0] >= n:
            done.set()

    lst.on_msg = on_msg
    c0 = _cpu()
    t0 = time.perf_counter()
    c.subscribe("/queue/" + q, id="1", ack="client-individual", headers={"activemq.prefetchSize": "100"})
    done.wait(600)
    dt = time.perf_counter() - t0
    if q.startswith("bench_raw_"):
        _cpu_row("raw stomp.py consume", c0, count[0])
    c.disconnect()
    return count[0] / dt


def _booster(url: str, concurrency: str, workers: int, prefetch: int | None, counter: Any) -> Any:
    return counting_booster("stomp", url, concurrency, workers, prefetch, counter)


def bk_publish(url: str, n: int, m: int) -> dict[str, float]:
    out: dict[str, float] = {}
    f = _booster(url, "solo", 1, None, [])
    f.push(0)
    f.purge()
    t0 = time.perf_counter()
    for i in range(m):
        f.push(i)
    out["one_by_one"] = m / (time.perf_counter() - t0)
    f.purge()
    t0 = time.perf_counter()
    f.push_many([(i,) for i in range(n)])
    out["push_many"] = n / (time.perf_counter() - t0)
    assert f.count() == n, f"push_many lost messages: {f.count()} != {n}"
    f.purge()
    f.broker.close()
    return out


def bk_broker_layer(url: str, n: int) -> float:
    from boostkernel_stomp.broker import StompBroker

    f = _booster(url, "solo", 1, 100, [])
    f.push_many([(i,) for i in range(n)])
    b = StompBroker(f.queue, url, prefetch=100)
    c0 = _cpu()
    rate = broker_layer_rate(b, n, 5.0)
    _cpu_row("broker layer", c0, n)
    f.broker.close()
    return rate


def bk_consume(url: str, n: int, concurrency: str, workers: int, prefetch: int | None = None) -> float:
    done: list[None] = []
    f = _booster(url, concurrency, workers, prefetch, done)
    f.push_many([(i,) for i in range(n)])
    c0 = _cpu()
    rate = consume_rate(f, n, done)
    _cpu_row(f"consume {concurrency} x{workers}, prefetch {prefetch or 'default'}", c0, n)
    left = f.count()
    if left:
        print(f"  warning: {left} message(s) left after the consume run", file=sys.stderr)
        f.purge()
    f.broker.close()
    return rate


def main() -> int:
    args = rounds_args(__doc__, n=5_000, url_env="BOOSTKERNEL_STOMP_URL", url=DEFAULT_URL, json_name="stomp.json")
    n, url, threads = args.n, args.url, args.threads
    logging.getLogger("boostkernel").setLevel(logging.ERROR)
    logging.getLogger("stomp.py").setLevel(logging.CRITICAL)
    table = Table(16, 58, keep_best=True)
    row = table.row
    load0 = os.getloadavg()[0]
    print(f"STOMP at {url}; Python {platform.python_version()}; stomp.py {stomp.__version__}; "
          f"{os.cpu_count()} CPUs; load average {load0:.1f} at start; n={n}; {args.repeat} round(s)")
    table.header()
    m = min(n, 1000)
    warm = f"bench_warm_{uuid.uuid4().hex[:8]}"  # not measured: the server's JIT and store warm up first
    raw_publish(url, warm, m, 500)
    raw_consume(url, warm, m)
    for rnd in range(args.repeat):
        print(f"-- round {rnd + 1} of {args.repeat} (load average {os.getloadavg()[0]:.1f})")
        q = f"bench_raw_{uuid.uuid4().hex[:8]}"
        row("stomp.py (raw)", "send loop, persistent, receipt each (1 RTT each)", raw_publish(url, q, m, 1))
        row("stomp.py (raw)", "send in transactions of 500, receipt on COMMIT", raw_publish(url, q, n, 500))
        row("stomp.py (raw)", "consume, client-individual ACK each, prefetch 100", None, raw_consume(url, q, n + m))
        pub = bk_publish(url, n, m)
        row("boostkernel", "push() one by one (receipt each)", pub["one_by_one"])
        row("boostkernel", "push_many() (transactions of 500, receipt on COMMIT)", pub["push_many"])
        row("boostkernel", "broker layer: fetch(100) + ack_many, prefetch 100", None, bk_broker_layer(url, n))
        consume_rows(row, bk_consume, url, n, threads)
    table.print_best(args.repeat)
    print_consume_ratios(table, threads)
    raw = table.raw_consume()
    checks = []
    for name, start in (("consume solo (default prefetch)", "consume(), solo (default"),
                        ("consume solo, prefetch 100", "consume(), solo, prefetch"),
                        (f"consume threads x{threads} (default prefetch)", f"consume(), threads x{threads} (default"),
                        (f"consume threads x{threads}, prefetch 100", f"consume(), threads x{threads}, prefetch")):
        v = table.top_consume(start)
        per = ", ".join(f"{o / r:.0%}" for o, r in zip(table.samples("boostkernel", start),
                                                        table.samples("(raw)", "consume")))
        checks.append((f"{name} >= 80% of the raw stomp.py consume loop (medians)", v >= 0.8 * raw,
                       f"{v:,.0f} vs {raw:,.0f} ({v / raw:.0%}; per round {per})"))
    targets = print_targets(checks)
    print("\nCPU time of this process per consumed message (median over the rounds; ActiveMQ's not included):")
    for name, v in CPU_US.items():
        print(f"  {name:40s} {statistics.median(v):6.1f} us  (rounds: {', '.join(f'{x:.0f}' for x in v)})")
    load1 = os.getloadavg()[0]
    print(f"load average {load1:.1f} at the end")
    write_json(args.json, {"n": n, "repeat": args.repeat, "url": url, "python": platform.python_version(),
                           "loadavg_start": load0, "loadavg_end": load1, "time": time.time(),
                           "rows": table.rows, "targets": targets, "cpu_us_per_message": CPU_US})
    return 0


if __name__ == "__main__":
    sys.exit(main())
