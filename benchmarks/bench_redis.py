"""Redis throughput: boostkernel's `redis` broker side by side with raw redis-py loops and peer frameworks.

    uv run python benchmarks/bench_redis.py [-n 100000] [--url redis://127.0.0.1:6379/14] [--json out.json]

All rows run against the same Redis in one run, with no-op tasks and one worker process:

* raw redis-py baselines: LPUSH loop; pipelined LPUSH (1000 per round trip); a reliable LMOVE+LREM loop
  (two round trips per message); a batched reliable loop (one Lua call moves 100 messages into a
  processing list, then one pipelined round trip of 100 LREM acks) — the practical limit of a reliable
  list consumer in Python;
* boostkernel: publish one by one (``push``), batched (``push_many``), auto-batched (``push`` with
  ``broker_options={"auto_batch": True}``, clock stopped after ``flush()``); consume with ``solo`` and
  with ``threads`` (ack-after-run, in-flight hash, heartbeats: the full at-least-once path);
* peers: every ``benchmarks/peers/<name>_bench.py`` that exists is run as a subprocess with
  ``--broker-url URL -n N --json`` and its one JSON object becomes a row; missing ones are listed as skipped.

Targets (checked and printed): solo consume >= 50% of the batched reliable loop; threads consume >= 5x
funboost's ack-able mode and >= 10x dramatiq; one-by-one publish >= 90% of the raw LPUSH loop;
auto-batched publish >= 100,000/s.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import redis
from _common import Table, body, consume_rate, counting_booster, print_targets, run_peer, write_json

HERE = Path(__file__).resolve().parent
PEERS = ("celery", "dramatiq", "rq", "huey", "funboost")


# --- raw redis-py baselines --------------------------------------------------------------------------


def raw_lpush(r: redis.Redis, n: int) -> float:
    key = f"bench:raw:{uuid.uuid4().hex}"
    t0 = time.perf_counter()
    for i in range(n):
        r.lpush(key, body(i))
    dt = time.perf_counter() - t0
    r.delete(key)
    return n / dt


def raw_lpush_connection(r: redis.Redis, n: int) -> float:
    """LPUSH loop on one dedicated connection (send_command/read_response): redis-py without its client layer."""
    key = f"bench:raw:{uuid.uuid4().hex}"
    conn = r.connection_pool.make_connection()
    t0 = time.perf_counter()
    for i in range(n):
        conn.send_command("LPUSH", key, body(i))
        conn.read_response()
    dt = time.perf_counter() - t0
    conn.disconnect()
    r.delete(key)
    return n / dt


def raw_lpush_pipelined(r: redis.Redis, n: int) -> float:
    key = f"bench:raw:{uuid.uuid4().hex}"
    t0 = time.perf_counter()
    for start in range(0, n, 1000):
        pipe = r.pipeline(transaction=False)
        for i in range(start, min(n, start + 1000)):
            pipe.lpush(key, body(i))
        pipe.execute()
    dt = time.perf_counter() - t0
    r.delete(key)
    return n / dt


def _preload(r: redis.Redis, key: str, n: int) -> None:
    for start in range(0, n, 5000):
        r.rpush(key, *[body(i) for i in range(start, min(n, start + 5000))])


def raw_lmove_lrem(r: redis.Redis, n: int) -> float:
    key, proc = f"bench:raw:{uuid.uuid4().hex}", f"bench:raw:proc:{uuid.uuid4().hex}"
    _preload(r, key, n)
    t0 = time.perf_counter()
    done = 0
    while done < n:
        m = r.lmove(key, proc, "LEFT", "RIGHT")
        if m is None:
            break
        orjson.loads(m)  # the no-op task still decodes its message
        r.lrem(proc, 1, m)
        done += 1
    dt = time.perf_counter() - t0
    r.delete(key, proc)
    return done / dt


_MOVE100 = """
local got = redis.call('LPOP', KEYS[1], ARGV[1])
if not got then return {} end
redis.call('RPUSH', KEYS[2], unpack(got))
return got
"""


def raw_batched_reliable(r: redis.Redis, n: int) -> float:
    key, proc = f"bench:raw:{uuid.uuid4().hex}", f"bench:raw:proc:{uuid.uuid4().hex}"
    _preload(r, key, n)
    move = r.register_script(_MOVE100)
    t0 = time.perf_counter()
    done = 0
    while done < n:
        got = move(keys=[key, proc], args=[100])
        if not got:
            break
        for m in got:
            orjson.loads(m)
        pipe = r.pipeline(transaction=False)
        for m in got:
            pipe.lrem(proc, 1, m)
        pipe.execute()
        done += len(got)
    dt = time.perf_counter() - t0
    r.delete(key, proc)
    return done / dt


# --- boostkernel ----------------------------------------------------------------------------------------


def _booster(url: str, concurrency: str, workers: int, prefetch: int | None, counter: Any, **opts: Any) -> Any:
    return counting_booster("redis", url, concurrency, workers, prefetch, counter, broker_options=opts)


def bk_publish(url: str, n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    f = _booster(url, "solo", 1, None, [])
    f.push(0)  # connect
    f.purge()
    t0 = time.perf_counter()
    for i in range(n):
        f.push(i)
    out["one_by_one"] = n / (time.perf_counter() - t0)
    f.purge()
    t0 = time.perf_counter()
    f.push_many([(i,) for i in range(n)])
    out["push_many"] = n / (time.perf_counter() - t0)
    f.purge()
    g = _booster(url, "solo", 1, None, [], auto_batch=True)
    g.push(0)
    g.broker.flush()
    g.purge()
    t0 = time.perf_counter()
    for i in range(n):
        g.push(i)
    g.broker.flush()
    out["auto_batched"] = n / (time.perf_counter() - t0)
    assert g.count() == n, f"auto-batched publish lost messages: {g.count()} != {n}"
    g.purge()
    g.broker.close()
    f.broker.close()
    return out


def bk_consume(url: str, n: int, concurrency: str, workers: int, prefetch: int | None) -> float:
    done: list[None] = []
    f = _booster(url, concurrency, workers, prefetch, done)
    f.purge()
    f.push_many([(i,) for i in range(n)])
    assert f.count() == n
    rate = consume_rate(f, n, done)
    left = f.count() + f.broker.in_flight()
    if left:
        print(f"  warning: {left} message(s) left after the consume run", file=sys.stderr)
    return rate


# --- boostkernel measured exactly like the peers (benchmarks/peers/peerbench_common.py) --------------------

PEER_WORKER = r"""
import os, sys
from peerbench_common import count_done
from boostkernel import boost
from boostkernel.logs import setup_logging

setup_logging("ERROR")


@boost(os.environ["BK_QUEUE"], broker="redis", broker_url=os.environ["PEERBENCH_BROKER_URL"],
       concurrency=os.environ["BK_CONCURRENCY"], workers=int(os.environ["BK_WORKERS"]),
       prefetch=int(os.environ["BK_PREFETCH"]) or None)
def noop(i: int) -> None:
    count_done()


if __name__ == "__main__":
    noop.consume()
    noop.wait()
"""


def peer_counter_ceiling(n: int, threads: int = 50) -> float | None:
    """The peers' per-task counter round trip alone (no framework), from ``threads`` threads: the highest
    consume rate the peer method can show for anyone."""
    sys.path.insert(0, str(HERE / "peers"))
    try:
        import peerbench_common as pc
    except ImportError:
        return None
    key = f"peerbench:ceiling:{uuid.uuid4().hex[:8]}"
    os.environ["PEERBENCH_COUNTER_KEY"] = key
    try:
        per = max(1, n // threads)

        def work() -> None:
            for _ in range(per):
                pc.count_done()
            pc._flush()

        ts = [threading.Thread(target=work) for _ in range(threads)]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return per * threads / (time.perf_counter() - t0)
    finally:
        pc.reset_counter(key)
        os.environ.pop("PEERBENCH_COUNTER_KEY", None)


def bk_peer_method(url: str, n: int, concurrency: str, workers: int, prefetch: int | None) -> dict[str, Any] | None:
    """One boostkernel worker *process*; every task does the peers' counter round trip; steady-state rate."""
    sys.path.insert(0, str(HERE / "peers"))
    try:
        import peerbench_common as pc
    except ImportError:
        return None
    import tempfile

    from boostkernel import boost

    queue = f"bench_peer_{concurrency}_{uuid.uuid4().hex[:8]}"
    key = f"peerbench:boostkernel:{uuid.uuid4().hex[:8]}"

    @boost(queue, broker="redis", broker_url=url)
    def noop(i: int) -> None: ...

    pc.reset_counter(key)
    publish_s = pc.time_publish(n, noop.push)
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "bk_peer_worker.py"
        script.write_text(PEER_WORKER)
        env = pc.worker_env(url, key)
        env.update(BK_QUEUE=queue, BK_CONCURRENCY=concurrency, BK_WORKERS=str(workers), BK_PREFETCH=str(prefetch or 0))
        worker = pc.Worker(cmd=[sys.executable, str(script)], env=env)
        res = pc.measure(framework="boostkernel", version="0.1.0", broker_url=url, n=n, concurrency=workers,
                         mode=f"redis reliable list, {concurrency} x{workers}, ack after run", counter_key=key,
                         publish_seconds=publish_s, worker=worker, timeout=600)
    pc.reset_counter(key)
    noop.purge()
    noop.broker.close()
    return res


# --- peers ----------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=100_000, help="messages per measurement (default 100000)")
    ap.add_argument("--url", default=os.environ.get("BOOSTKERNEL_REDIS_URL", "redis://127.0.0.1:6379/14"))
    ap.add_argument("--peer-n", type=int, default=None, help="messages for peer frameworks (default: -n)")
    ap.add_argument("--threads", type=int, default=50, help="workers of the threads consume row (funboost: 50)")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs for every own/raw row")
    ap.add_argument("--json", default=str(HERE / "results" / "redis.json"), help="where to write the JSON")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--count-method", choices=("batched", "roundtrip"), default="batched",
                    help="how peer-method workers count completions (benchmarks/peers/peerbench_common.py)")
    args = ap.parse_args()
    os.environ["PEERBENCH_COUNT"] = args.count_method  # inherited by every peer script and worker process
    n, url = args.n, args.url
    import logging

    logging.getLogger("boostkernel").setLevel(logging.ERROR)
    r = redis.Redis.from_url(url)
    r.ping()
    table = Table(22, 44, notes=True)
    row, rows = table.row, table.rows

    print(f"Redis {r.info('server')['redis_version']} at {url}; Python {platform.python_version()}; "
          f"{platform.processor() or platform.machine()}; n={n}")
    table.header()
    k = max(1, args.repeat)

    def best(fn: Any, *a: Any) -> float:
        return max(fn(*a) for _ in range(k))

    # Each target compares two rows; they are measured alternately (A, B, A, B, …) so both see the same
    # machine load, and the target uses the median of the per-pair ratios. The table shows the best run.
    lps, pubs, brs, solos = [], [], [], []
    for _ in range(k):
        lps.append(raw_lpush(r, n))
        pubs.append(bk_publish(url, n))
    lp = max(lps)
    row("redis-py (raw)", "LPUSH loop (redis.Redis.lpush)", lp)
    row("redis-py (raw)", "LPUSH loop on one Connection (no client layer)", best(raw_lpush_connection, r, n))
    row("redis-py (raw)", "pipelined LPUSH x1000", best(raw_lpush_pipelined, r, n))
    row("redis-py (raw)", "reliable LMOVE + LREM loop (ack-able)", None, best(raw_lmove_lrem, r, n))
    for _ in range(k):
        brs.append(raw_batched_reliable(r, n))
        solos.append(bk_consume(url, n, "solo", 1, 100))
    br = max(brs)
    row("redis-py (raw)", "batched reliable: Lua move 100 + pipelined acks", None, br)
    pub = {key: max(p[key] for p in pubs) for key in pubs[0]}
    row("boostkernel", "push() one by one", pub["one_by_one"])
    row("boostkernel", "push_many() batched", pub["push_many"])
    row("boostkernel", "push() auto-batched (auto_batch=True)", pub["auto_batched"])
    solo = max(solos)
    row("boostkernel", "consume solo, prefetch 100 (at-least-once)", None, solo)
    solo_ratio = statistics.median(b / a for a, b in zip(brs, solos, strict=True))
    pub_ratio = statistics.median(b["one_by_one"] / a for a, b in zip(lps, pubs, strict=True))
    thr = best(bk_consume, url, n, "threads", args.threads, None)
    row("boostkernel", f"consume threads x{args.threads} (at-least-once)", None, thr)
    pm_solo = bk_peer_method(url, args.peer_n or n, "solo", 1, 100)
    pm_thr = bk_peer_method(url, args.peer_n or n, "threads", 50, None)
    for res in (pm_solo, pm_thr):
        if res is not None:
            row("boostkernel (peer method)", res["mode"], res["publish_per_s"], res["consume_per_s"],
                f"1 worker process, completions counted {args.count_method}, steady state")
    ceiling = peer_counter_ceiling(args.peer_n or n)
    if ceiling is not None:
        row("(peer method ceiling)", f"the {args.count_method} counter alone, 50 threads, no framework", None, ceiling,
            "no framework can exceed this with the peer method")
    peers: dict[str, dict[str, Any]] = {}
    if not args.no_peers:
        for name in PEERS:
            res = run_peer(name, url, args.peer_n or n)
            peers[name] = res
            if "skipped" in res:
                row(name, "(skipped)", note=res["skipped"])
            else:
                row(name, str(res.get("mode", "")), res.get("publish_per_s"), res.get("consume_per_s"))

    def consume_of(name: str) -> float | None:
        p = peers.get(name) or {}
        return p.get("consume_per_s") if "skipped" not in p else None

    checks = [
        ("solo consume >= 50% of the batched reliable loop (median of paired runs)", solo_ratio >= 0.5,
         f"{100 * solo_ratio:.0f}% (best runs: {solo:,.0f} vs {br:,.0f})"),
        ("one-by-one publish >= 90% of the raw LPUSH loop (median of paired runs)", pub_ratio >= 0.9,
         f"{100 * pub_ratio:.0f}% (best runs: {pub['one_by_one']:,.0f} vs {lp:,.0f})"),
        ("auto-batched publish >= 100,000/s", pub["auto_batched"] >= 100_000, f"{pub['auto_batched']:,.0f}"),
    ]
    # Peers are measured by a counter in a separate worker process: compare them
    # with boostkernel measured the same way (the "peer method" row), not with the in-process rows.
    same = pm_thr["consume_per_s"] if pm_thr else thr
    fb = consume_of("funboost")
    checks.append(("threads consume >= 5x funboost (ack-able), same method", None if fb is None else same >= 5 * fb,
                   "funboost row missing" if fb is None else f"{same:,.0f} vs {5 * fb:,.0f}"))
    dq = consume_of("dramatiq")
    checks.append(("threads consume >= 10x dramatiq, same method", None if dq is None else same >= 10 * dq,
                   "dramatiq row missing" if dq is None else f"{same:,.0f} vs {10 * dq:,.0f}"))
    # The issue states funboost's ack-able mode at ~4,700/s on this machine (measured without the counter):
    checks.append(("threads consume (in-process count) >= 5x the issue's funboost figure (4,700/s)",
                   thr >= 5 * 4_700, f"{thr:,.0f} vs {5 * 4_700:,.0f}"))
    targets = print_targets(checks)
    out = {"n": n, "repeat": k, "command": " ".join(["python", *sys.argv]), "url": url.split("@")[-1], "python": platform.python_version(),
           "redis": r.info("server")["redis_version"], "time": time.time(), "count_method": args.count_method, "rows": rows,
           "targets": targets}
    write_json(args.json, out)
    return 0


if __name__ == "__main__":
    threading.excepthook = lambda a: print(f"thread error: {a.exc_value!r}", file=sys.stderr)
    sys.exit(main())
