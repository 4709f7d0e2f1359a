"""STOMP (ActiveMQ) throughput: boostkernel's `stomp` broker side by side with raw stomp.py loops.

    uv run python benchmarks/bench_stomp.py [-n 10000] [--url stomp://127.0.0.1:61613]
                                            [--json benchmarks/results/stomp.json]

All rows run against the same ActiveMQ (``.ci/services.d/activemq.sh``) in one run, with no-op tasks and
persistent messages, in one process:

* raw stomp.py baselines (``Connection12``, bytes bodies): a ``send`` loop with a ``receipt`` on each
  frame (one round trip each: the guarantee of ``push()``); the same messages sent in transactions of 500
  with a receipt on each ``COMMIT`` (the guarantee of ``push_many()``); a consume loop with
  ``ack:client-individual``, ``activemq.prefetchSize`` 100, an ``ACK`` per message after decoding its JSON
  body (the guarantee of ``consume()``: ack after the task);
* boostkernel: ``push()`` one by one, ``push_many()``, the broker layer alone (``fetch(100)`` + ``ack_many``),
  ``consume()`` at the default settings (threads x16), ``solo`` and ``threads`` at prefetch 100.

Target (checked and printed): consume >= 80% of the raw stomp.py consume loop.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import orjson
import stomp
from _common import Table, body, broker_layer_rate, consume_rate, counting_booster, print_targets, write_json

HERE = Path(__file__).resolve().parent
DEFAULT_URL = "stomp://127.0.0.1:61613"


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
    t0 = time.perf_counter()
    c.subscribe("/queue/" + q, id="1", ack="client-individual", headers={"activemq.prefetchSize": "100"})
    done.wait(600)
    dt = time.perf_counter() - t0
    c.disconnect()
    return count[0] / dt


def _booster(url: str, concurrency: str, workers: int, prefetch: int | None, counter: Any) -> Any:
    return counting_booster("stomp", url, concurrency, workers, prefetch, counter)


def bk_publish(url: str, n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    f = _booster(url, "solo", 1, None, [])
    f.push(0)
    f.purge()
    m = min(n, 3000)
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
    rate = broker_layer_rate(b, n, 5.0)
    f.broker.close()
    return rate


def bk_consume(url: str, n: int, concurrency: str, workers: int, prefetch: int | None) -> float:
    done: list[None] = []
    f = _booster(url, concurrency, workers, prefetch, done)
    f.push_many([(i,) for i in range(n)])
    rate = consume_rate(f, n, done)
    left = f.count()
    if left:
        print(f"  warning: {left} message(s) left after the consume run", file=sys.stderr)
        f.purge()
    f.broker.close()
    return rate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=10_000, help="messages per measurement (default 10000)")
    ap.add_argument("--url", default=os.environ.get("BOOSTKERNEL_STOMP_URL", DEFAULT_URL))
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--json", default=str(HERE / "results" / "stomp.json"))
    args = ap.parse_args()
    n, url = args.n, args.url
    logging.getLogger("boostkernel").setLevel(logging.ERROR)
    logging.getLogger("stomp.py").setLevel(logging.CRITICAL)
    table = Table(16, 58)
    row, rows = table.row, table.rows

    print(f"STOMP at {url}; Python {platform.python_version()}; stomp.py {stomp.__version__}; "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at start; n={n}")
    table.header()
    q = f"bench_raw_{uuid.uuid4().hex[:8]}"
    row("stomp.py (raw)", "send loop, persistent, receipt each (1 RTT each)", raw_publish(url, q, min(n, 3000), 1))
    raw_con_small = raw_consume(url, q, min(n, 3000))  # drains the queue
    del raw_con_small
    row("stomp.py (raw)", "send in transactions of 500, receipt on COMMIT", raw_publish(url, q, n, 500))
    raw_con = raw_consume(url, q, n)
    row("stomp.py (raw)", "consume, client-individual ACK each, prefetch 100", None, raw_con)
    pub = bk_publish(url, n)
    row("boostkernel", "push() one by one (receipt each)", pub["one_by_one"])
    row("boostkernel", "push_many() (transactions of 500, receipt on COMMIT)", pub["push_many"])
    layer = bk_broker_layer(url, n)
    row("boostkernel", "broker layer: fetch(100) + ack_many, prefetch 100", None, layer)
    dflt = bk_consume(url, n, "threads", 16, None)
    row("boostkernel", "consume at defaults: threads x16, prefetch unset", None, dflt)
    solo = bk_consume(url, n, "solo", 1, 100)
    row("boostkernel", "consume solo, prefetch 100 (at-least-once)", None, solo)
    thr = bk_consume(url, n, "threads", args.threads, 100)
    row("boostkernel", f"consume threads x{args.threads}, prefetch 100 (at-least-once)", None, thr)
    best = max(dflt, solo, thr)
    checks = [("consume (best of defaults/solo/threads) >= 80% of the raw stomp.py consume loop",
               best >= 0.8 * raw_con, f"{best:,.0f} vs {0.8 * raw_con:,.0f} ({best / raw_con:.0%})")]
    targets = print_targets(checks)
    out = {"n": n, "url": url, "python": platform.python_version(), "loadavg_end": os.getloadavg()[0],
           "time": time.time(), "rows": rows, "targets": targets}
    write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
