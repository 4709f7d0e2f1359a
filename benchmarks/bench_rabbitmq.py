"""RabbitMQ throughput: boostkernel's `rabbitmq` broker side by side with raw pika loops and peer frameworks.

    uv run python benchmarks/bench_rabbitmq.py [-n 50000] [--url amqp://guest:guest@127.0.0.1:5672/%2F]
                                               [--json benchmarks/results/rabbitmq.json] [--no-peers]

All rows run against the same RabbitMQ in one run, with no-op tasks, durable queues, persistent messages
and one consumer process:

* raw pika baselines (BlockingConnection): a ``basic_publish`` loop (no confirms); a ``basic_publish``
  loop with publisher confirms (one round trip each); a consume loop with manual ack per message and
  ``basic_qos(prefetch_count=100)`` that decodes each JSON body;
* boostkernel: ``push()`` one by one (pipelined: confirms tracked, the clock stops after ``flush()``
  has every confirm), the same with ``confirm_each`` (each waits for its own confirm), ``push_many()``
  (the batch is published, then all confirms are awaited); the broker layer alone (``fetch(100)`` +
  ``ack_many``); ``consume()`` at the **default settings** (threads x16, no prefetch given), with ``solo``
  and with ``threads`` at prefetch 100 (decode, run, ack after run: the full at-least-once path);
* peers: every ``benchmarks/peers/<name>_bench.py`` that exists (celery, dramatiq, funboost) is run as a
  subprocess with ``--broker-url URL -n N --json``; its one JSON object becomes a row; missing ones are
  listed as skipped.

Targets (checked and printed): consume at the default settings >= 80% of the raw pika consume loop;
one-by-one ``push()`` with confirms >= 10,000/s; ``push_many`` >= 10,000/s.
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

import orjson
import pika
from _common import Table, body, broker_layer_rate, consume_rate, counting_booster, print_targets, run_peer, write_json

HERE = Path(__file__).resolve().parent
PEERS = ("celery", "dramatiq", "funboost")
DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


# --- raw pika baselines -------------------------------------------------------------------------------

def _raw_queue(ch: Any) -> str:
    q = f"bench_raw_{uuid.uuid4().hex[:8]}"
    ch.queue_declare(q, durable=True)
    return q


def raw_publish(url: str, n: int, confirms: bool) -> tuple[float, str]:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    if confirms:
        ch.confirm_delivery()
    q = _raw_queue(ch)
    props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
    bodies = [body(i) for i in range(n)]
    t0 = time.perf_counter()
    for b in bodies:
        ch.basic_publish("", q, b, props)
    if not confirms:  # make sure everything reached the broker before stopping the clock
        ch.queue_declare(q, durable=True)
    dt = time.perf_counter() - t0
    conn.close()
    return n / dt, q


def raw_consume(url: str, q: str, n: int) -> float:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=100)
    done = 0
    t0 = time.perf_counter()

    def on_message(c: Any, method: Any, props: Any, b: bytes) -> None:
        nonlocal done
        orjson.loads(b)
        c.basic_ack(method.delivery_tag)
        done += 1
        if done >= n:
            c.stop_consuming()

    ch.basic_consume(q, on_message, auto_ack=False)
    ch.start_consuming()
    dt = time.perf_counter() - t0
    ch.queue_delete(q)
    conn.close()
    return done / dt


def drop_queue(url: str, q: str) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    conn.channel().queue_delete(q)
    conn.close()


# --- boostkernel ----------------------------------------------------------------------------------------

def _booster(url: str, concurrency: str, workers: int, prefetch: int | None, counter: Any,
             broker_options: dict[str, Any] | None = None) -> Any:
    return counting_booster("rabbitmq", url, concurrency, workers, prefetch, counter,
                            broker_options=broker_options or {})


def bk_publish(url: str, n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    f = _booster(url, "solo", 1, None, [])
    f.push(0)  # connect and declare
    f.purge()
    m = min(n, 20_000)
    t0 = time.perf_counter()
    for i in range(m):
        f.push(i)
    f.broker.flush()  # every confirm is in
    out["one_by_one"] = m / (time.perf_counter() - t0)
    assert f.count() == m, f"push lost messages: {f.count()} != {m}"
    f.purge()
    g = _booster(url, "solo", 1, None, [], {"confirm_each": True})
    g.push(0)
    g.purge()
    m = min(n, 3000)
    t0 = time.perf_counter()
    for i in range(m):
        g.push(i)
    out["confirm_each"] = m / (time.perf_counter() - t0)
    g.purge()
    g.broker.delete_queues()
    g.broker.close()
    t0 = time.perf_counter()
    f.push_many([(i,) for i in range(n)])
    out["push_many"] = n / (time.perf_counter() - t0)
    assert f.count() == n, f"push_many lost messages: {f.count()} != {n}"
    f.purge()
    t0 = time.perf_counter()
    f.push_many([(i,) for i in range(n)], chunk_size=10_000)
    out["push_many_10k"] = n / (time.perf_counter() - t0)
    assert f.count() == n, f"push_many lost messages: {f.count()} != {n}"
    f.purge()
    f.broker.delete_queues()
    f.broker.close()
    return out


def bk_broker_layer(url: str, n: int) -> float:
    from boostkernel_rabbitmq.broker import RabbitmqBroker

    f = _booster(url, "solo", 1, 100, [])
    f.push_many([(i,) for i in range(n)])
    b = RabbitmqBroker(f.queue, url, prefetch=100)
    rate = broker_layer_rate(b, n)
    f.broker.delete_queues()
    f.broker.close()
    return rate


def bk_consume(url: str, n: int, concurrency: str, workers: int, prefetch: int | None,
               broker_options: dict[str, Any] | None = None) -> float:
    done: list[None] = []
    f = _booster(url, concurrency, workers, prefetch, done, broker_options)
    f.purge()
    f.push_many([(i,) for i in range(n)])
    assert f.count() == n
    rate = consume_rate(f, n, done)
    left = f.count()
    if left:
        print(f"  warning: {left} message(s) left after the consume run", file=sys.stderr)
    f.broker.delete_queues()
    f.broker.close()
    return rate


# --- peers ----------------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=50_000, help="messages per measurement (default 50000)")
    ap.add_argument("--url", default=os.environ.get("BOOSTKERNEL_RABBITMQ_URL", DEFAULT_URL))
    ap.add_argument("--peer-n", type=int, default=None, help="messages for peer frameworks (default: -n)")
    ap.add_argument("--threads", type=int, default=16, help="workers of the threads consume row")
    ap.add_argument("--json", default=str(HERE / "results" / "rabbitmq.json"), help="where to write the JSON")
    ap.add_argument("--no-peers", action="store_true")
    args = ap.parse_args()
    n, url = args.n, args.url
    logging.getLogger("boostkernel").setLevel(logging.ERROR)
    logging.getLogger("pika").setLevel(logging.CRITICAL)

    table = Table(22, 52, notes=True)
    row, rows = table.row, table.rows

    conn = pika.BlockingConnection(pika.URLParameters(url))
    server = conn._impl.server_properties.get("version", b"?")  # noqa: SLF001 - informational only
    conn.close()
    server = server.decode() if isinstance(server, bytes) else str(server)
    print(f"RabbitMQ {server} at {url.split('@')[-1]}; Python {platform.python_version()}; pika {pika.__version__}; "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at start; n={n}")
    table.header()

    raw_pub, q1 = raw_publish(url, n, confirms=False)
    row("pika (raw)", "basic_publish loop, persistent, no confirms", raw_pub)
    raw_pub_c, q2 = raw_publish(url, min(n, 5000), confirms=True)
    drop_queue(url, q2)
    row("pika (raw)", "basic_publish loop with confirms (1 RTT each)", raw_pub_c)
    raw_con = raw_consume(url, q1, n)
    row("pika (raw)", "consume, manual ack each, prefetch 100", None, raw_con)

    pub = bk_publish(url, n)
    row("boostkernel", "push() one by one, pipelined confirms (default)", pub["one_by_one"])
    row("boostkernel", "push() one by one, confirm_each (1 RTT each)", pub["confirm_each"])
    row("boostkernel", "push_many() pipelined confirms (chunks of 1000)", pub["push_many"])
    row("boostkernel", "push_many(chunk_size=10000) pipelined confirms", pub["push_many_10k"])
    layer = bk_broker_layer(url, n)
    row("boostkernel", "broker layer: fetch(100) + ack_many, prefetch 100", None, layer)
    dflt = bk_consume(url, n, "threads", 16, None)
    row("boostkernel", "consume at defaults: threads x16, prefetch unset", None, dflt)
    old_dflt = bk_consume(url, n, "threads", 16, None, {"prefetch": 32})
    row("boostkernel", "consume threads x16, qos window 32 (the former default)", None, old_dflt)
    solo = bk_consume(url, n, "solo", 1, 100)
    row("boostkernel", "consume solo, prefetch 100 (at-least-once)", None, solo)
    thr = bk_consume(url, n, "threads", args.threads, 100)
    row("boostkernel", f"consume threads x{args.threads}, prefetch 100 (at-least-once)", None, thr)

    peers: dict[str, dict[str, Any]] = {}
    if not args.no_peers:
        peer_url = url.replace("/%2F", "//")
        for name in PEERS:
            res = run_peer(name, peer_url, args.peer_n or n)
            peers[name] = res
            if "skipped" in res:
                row(name, "(skipped)", note=res["skipped"])
            else:
                row(name, str(res.get("mode", "")), res.get("publish_per_s"), res.get("consume_per_s"))

    best = max(thr, solo)
    checks = [
        ("consume at the default settings >= 80% of the raw pika consume loop", dflt >= 0.8 * raw_con,
         f"{dflt:,.0f} vs {0.8 * raw_con:,.0f} ({dflt / raw_con:.0%})"),
        ("consume (best of solo/threads, prefetch 100) >= 80% of the raw pika consume loop",
         best >= 0.8 * raw_con, f"{best:,.0f} vs {0.8 * raw_con:,.0f}"),
        ("push() one by one with confirms >= 10,000/s", pub["one_by_one"] >= 10_000, f"{pub['one_by_one']:,.0f}"),
        ("push_many (pipelined, with confirms, chunks of 1000) >= 10,000/s", pub["push_many"] >= 10_000,
         f"{pub['push_many']:,.0f}"),
    ]
    fb = peers.get("funboost") or {}
    if fb and "skipped" not in fb and fb.get("consume_per_s"):
        checks.append(("consume >= funboost (amqpstorm)", best >= fb["consume_per_s"],
                       f"{best:,.0f} vs {fb['consume_per_s']:,.0f}"))
    targets = print_targets(checks)
    out = {"n": n, "url": url.split("@")[-1], "python": platform.python_version(), "rabbitmq": server,
           "loadavg_end": os.getloadavg()[0],
           "time": time.time(), "rows": rows,
           "targets": targets}
    write_json(args.json, out)
    return 0


if __name__ == "__main__":
    threading.excepthook = lambda a: print(f"thread error: {a.exc_value!r}", file=sys.stderr)
    sys.exit(main())
