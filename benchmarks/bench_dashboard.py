"""The dashboard's costs: a worker's throughput with monitoring/metrics on vs off, and task-record search.

    uv run --no-sync python benchmarks/bench_dashboard.py worker [-n 20000] [--repeat 3]
    uv run --no-sync python benchmarks/bench_dashboard.py search [--records 1000000] [--stores sqlite,postgres,redis]
    uv run --no-sync python benchmarks/bench_dashboard.py writes [-n 3000] [--repeat 5] [--stores ...]

``worker``: the default embedded broker (SQLite, at-least-once: ack after the run), threads x4, a no-op
task; N messages published beforehand, the time to consume them all is measured (publishing is not timed).
Configurations run interleaved (off, on, then on, off …); the median on/off ratio of ``--repeat`` pairs is reported,
by wall clock and by CPU time per message (all threads of the process: on a machine shared with other work
the CPU time is the steadier figure; a GIL-bound worker's throughput is its inverse).
"Raw loop" is the same SQLite broker driven by hand (fetch, run, ack; no kernel) with the same guarantee.

``search``: fills a store with N task records like ``results=True`` writes them (8 queues, 5 statuses,
arguments with a word from a 50,000-word vocabulary), then times the dashboard's searches (median of 5).

``writes``: what the search indexes add to a worker's record writes: ``put_result`` of a "running" then a
finished record per task (what ``results=True`` writes), on a store nobody searched and on one searched
(indexes kept), interleaved, median of ``--repeat`` runs of ``-n`` tasks each, in microseconds per task.

A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from typing import Any

os.environ.setdefault("BOOSTKERNEL_DATA_DIR", tempfile.mkdtemp(prefix="bk-bench-dashboard-"))

from boostkernel import boost  # noqa: E402
from boostkernel.registry import REGISTRY  # noqa: E402


# --- worker throughput ----------------------------------------------------------------------------
def _noop(i: int) -> None:
    return None


def consume_rate(n: int, params: dict[str, Any]) -> float:
    return consume(n, params)[0]


def consume(n: int, params: dict[str, Any]) -> tuple[float, float]:
    """Messages per second (wall clock) and CPU microseconds per message (every thread of this process)."""
    q = f"bench_dash_{uuid.uuid4().hex[:8]}"
    fn = lambda i: None  # noqa: E731
    fn.__qualname__ = f"noop_{q}"
    b = boost(q, concurrency="threads", workers=4, **params)(fn)
    b.push_many([(i,) for i in range(n)])
    b.consume()  # controls start (a monitor registers in the store, a metrics server listens) before timing
    t0, c0 = time.perf_counter(), time.process_time()
    while b.count() > 0:
        time.sleep(0.005)
    # the last fetched batch is still running: wait for the consumer to go idle
    from boostkernel.testing.helpers import wait_until

    wait_until(lambda: _idle(b), 30, 0.002)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    b.stop()
    REGISTRY.pop(q, None)
    return n / dt, cpu / n * 1e6


def _idle(b: Any) -> bool:
    return int(b.broker.in_flight()) == 0


def raw_rate(n: int) -> float:
    """The same SQLite broker without the kernel: fetch a batch, call the function, ack each."""
    from boostkernel_sqlite.broker import SqliteBroker

    q = f"bench_raw_{uuid.uuid4().hex[:8]}"
    fn = lambda i: None  # noqa: E731
    fn.__qualname__ = f"raw_{q}"
    b = boost(q)(fn)
    b.push_many([(i,) for i in range(n)])
    broker: Any = SqliteBroker(q, b.params.broker_url, b.params)
    done = 0
    t0 = time.perf_counter()
    while done < n:
        batch = broker.fetch(64, 0.1)
        for d in batch:
            _noop(0)
            broker.ack(d)
        done += len(batch)
    dt = time.perf_counter() - t0
    broker.close()
    REGISTRY.pop(q, None)
    return n / dt


def hook_cost(calls: int = 200_000) -> float:
    """Microseconds per message that the monitor and metrics controls add to the consumer: its loop over the
    after-hooks (as ``Consumer._finish`` runs it) with the one hook they add (``Counters.finish``), minus the
    same loop with none."""
    from boostkernel_dashboard.monitor import Counters

    from boostkernel.context import Outcome, TaskContext
    from boostkernel.message import Envelope

    ctx = TaskContext(Envelope("q", [1], {}), None, None, "w")
    ctx.status = Outcome.SUCCESS
    ctx.finished_at = ctx.started_at + 0.003

    def loop(afters: list[Any]) -> float:
        t0 = time.perf_counter()
        for _ in range(calls):
            for a in afters:
                try:
                    a(ctx)
                except Exception:  # noqa: BLE001
                    pass
        return time.perf_counter() - t0

    return max(0.0, loop([Counters().finish]) - loop([])) / calls * 1e6


def bench_worker(n: int, repeat: int) -> None:
    configs = [("monitor=True", {"monitor": True}), ("metrics_port=0", {"metrics_port": 0}),
               ("monitor=True + metrics_port=0", {"monitor": True, "metrics_port": 0})]
    consume_rate(min(n, 5000), {})  # warm up: database files, imports, thread start-up
    offs: list[float] = []
    ratios: dict[str, list[float]] = {label: [] for label, _ in configs}
    cpu_ratios: dict[str, list[float]] = {label: [] for label, _ in configs}
    best: dict[str, float] = {}
    for r in range(repeat):
        for label, params in configs:
            if r % 2 == 0:  # alternate which runs first: a drift (the broker file growing) would favour one
                off, off_cpu = consume(n, {})
                on, on_cpu = consume(n, params)
            else:
                on, on_cpu = consume(n, params)
                off, off_cpu = consume(n, {})
            offs.append(off)
            ratios[label].append(on / off)
            cpu_ratios[label].append(off_cpu / on_cpu)
            best[label] = max(best.get(label, 0.0), on)
            print(f"  pair {r + 1} {label:32s} off {off:8.0f}  on {on:8.0f} msg/s  {100 * on / off:6.1f}%   "
                  f"CPU off {off_cpu:6.1f}  on {on_cpu:6.1f} us/msg  {100 * off_cpu / on_cpu:6.1f}%", file=sys.stderr)
    raw = max(raw_rate(n) for _ in range(repeat))
    per_msg = 1e6 / max(offs)
    cost = min(hook_cost() for _ in range(3))
    print(f"\nworker throughput, sqlite broker, threads x4, no-op task, n={n}, {repeat} interleaved off/on pairs")
    print(f"{'raw loop (fetch/run/ack, no kernel)':40s} {raw:9.0f} msg/s (best)")
    print(f"{'off':40s} {max(offs):9.0f} msg/s (best)  = {per_msg:.1f} us/msg")
    for label, _ in configs:
        print(f"{label:40s} {best[label]:9.0f} msg/s (best)  median on/off ratio "
              f"{100 * statistics.median(ratios[label]):6.1f}% (wall clock)  "
              f"{100 * statistics.median(cpu_ratios[label]):6.1f}% (CPU time per message)")
    print(f"counting per message (Counters.finish): {cost:.2f} us = {100 * cost / per_msg:.1f}% of a message's "
          f"{per_msg:.1f} us at the best 'off' rate")


# --- search -----------------------------------------------------------------------------------------
QUEUES = [f"queue{i}" for i in range(8)]
STATUSES = ["success"] * 6 + ["failure", "dead", "revoked", "expired"]


def fake_records(n: int, t0: float) -> Any:
    import random

    rnd = random.Random(42)
    for i in range(n):
        tid = str(uuid.UUID(int=rnd.getrandbits(128)))
        status = rnd.choice(STATUSES)
        at = t0 + i * 0.01
        rec: dict[str, Any] = {
            "task_id": tid, "queue": QUEUES[i % len(QUEUES)], "function": "app.tasks.work", "status": status,
            "attempt": 0, "delivery_count": 1, "worker": "host:1234", "host": "host", "pid": 1234,
            "thread": "boostkernel-worker-1", "args": [i, f"word{rnd.randrange(50_000)}"],
            "kwargs": {"user": f"user{rnd.randrange(10_000)}"}, "published_at": at, "started_at": at + 0.001,
            "finished_at": at + 0.002, "duration": 0.001}
        if status == "success":
            rec["result"] = i
        else:
            rec["error"] = {"type": "ValueError", "message": "bad", "traceback": "Traceback …"}
        yield tid, rec


def open_store(kind: str) -> Any:
    if kind == "sqlite":
        from boostkernel_sqlite.store import SqliteStore

        return SqliteStore(f"sqlite:///{tempfile.mkdtemp(prefix='bk-search-')}/store.db")
    if kind == "postgres":
        from boostkernel_postgres.store import PostgresStore

        return PostgresStore("postgresql://postgres@127.0.0.1:5432/postgres", schema=f"bench_{uuid.uuid4().hex[:6]}")
    if kind == "redis":
        from boostkernel_redis.store import RedisStore

        return RedisStore("redis://127.0.0.1:6379/0", key_prefix=f"bench{uuid.uuid4().hex[:6]}")
    raise SystemExit(f"unknown store {kind}")


def fill(kind: str, store: Any, n: int, t0: float) -> None:
    """Write the records in bulk (the benchmark's set-up, not what is measured)."""
    import orjson

    exp = time.time() + 86400.0
    batch: list[tuple[str, dict[str, Any]]] = []

    def flush() -> None:
        if kind == "sqlite":
            rows = [(f"result:{t}", orjson.dumps(r), exp) for t, r in batch]
            store.db.write(lambda c: c.executemany(
                "INSERT OR REPLACE INTO bk_kv (key, value, expires) VALUES (?,?,?)", rows))
        elif kind == "postgres":
            rows = [(f"result:{t}", orjson.dumps(r).decode(), 86400.0) for t, r in batch]
            store._run(lambda c: c.cursor().executemany(store.q_set, rows))
        else:
            pipe = store.redis.pipeline(transaction=False)
            for t, r in batch:
                pipe.set(store._k(f"result:{t}"), orjson.dumps(r), px=86_400_000)
            pipe.execute()
        batch.clear()

    for i, (tid, rec) in enumerate(fake_records(n, t0)):
        batch.append((tid, rec))
        if len(batch) == 10_000:
            flush()
            print(f"\r  {kind}: {i + 1} records", end="", file=sys.stderr)
    if batch:
        flush()


def cleanup(kind: str, store: Any) -> None:
    """Drop what the benchmark wrote (a PostgreSQL schema, Redis keys; SQLite's file is in a temp dir)."""
    if kind == "postgres":
        store._run(lambda c: c.execute(f'DROP SCHEMA "{store.schema}" CASCADE'))
    elif kind == "redis":
        pipe = store.redis.pipeline(transaction=False)
        for i, key in enumerate(store.redis.scan_iter(match=store.prefix + "*", count=5000)):
            pipe.unlink(key)
            if i % 5000 == 4999:
                pipe.execute()
        pipe.execute()


def bench_search(n: int, kinds: list[str]) -> None:
    from boostkernel_dashboard.records import Query, search

    t0 = time.time() - n * 0.01 - 60
    some_id = next(iter(fake_records(n // 2 + 1, t0)))[0]
    mid = t0 + n * 0.005
    queries = {
        "newest 100 (no filter)": Query(),
        "task id": Query(task_id=some_id),
        "task id prefix (8 chars)": Query(task_id=some_id[:8]),
        "task id prefix (2 chars)": Query(task_id=some_id[:2]),
        "queue + status": Query(queue="queue3", status="failure"),
        "queue + time range (1 h)": Query(queue="queue5", since=mid, until=mid + 3600),
        "status + time range (1 h)": Query(status="dead", since=mid, until=mid + 3600),
        "text in arguments (common)": Query(text="user12"),
        "text in arguments (rare)": Query(text="word49999"),
        "queue + text": Query(queue="queue1", text="word4242"),
        "status + text": Query(status="dead", text="word4242"),
        "text found nowhere": Query(text="nosuchthing"),
        "text + time range (10 h)": Query(text="word4242", since=mid, until=mid + 36000),
    }
    for kind in kinds:
        store = open_store(kind)
        t = time.perf_counter()
        fill(kind, store, n, t0)
        print(f"\n{kind}: {n} records written in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        prep = getattr(store, "prepare_search", None)
        if prep is not None:
            t = time.perf_counter()
            prep()
            print(f"{kind}: search indexes built in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        print(f"\nsearch over {n} task records, {kind} store ({'indexed' if prep else 'key scan'}), median of 5",
              flush=True)
        for label, q in queries.items():
            times: list[float] = []
            for _ in range(5):
                s = time.perf_counter()
                found = search([store], q)
                times.append((time.perf_counter() - s) * 1000)
                if times[-1] > 3000:
                    break  # a scan: once is enough
            print(f"  {label:30s} {statistics.median(times):8.1f} ms  ({len(found)} found)", flush=True)
        cleanup(kind, store)
        store.close()


def bench_writes(n: int, repeat: int, kinds: list[str]) -> None:
    def batch(k: int) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
        out = []
        for tid, rec in fake_records(k, time.time()):
            running = {key: v for key, v in rec.items() if key not in ("result", "error", "finished_at", "duration")}
            out.append((tid, {**running, "status": "running"}, rec))
        return out

    def run(store: Any, recs: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> float:
        t = time.perf_counter()
        for tid, running, final in recs:
            store.put_result(tid, running, 3600.0)
            store.put_result(tid, final, 3600.0)
        return (time.perf_counter() - t) / len(recs) * 1e6

    print(f"record writes per task (running + finished put_result), {n} tasks per run, median of {repeat}")
    for kind in kinds:
        off, on = open_store(kind), open_store(kind)
        on.prepare_search()
        run(off, batch(500)), run(on, batch(500))  # warm up
        t_off, t_on = [], []
        for _ in range(repeat):
            t_off.append(run(off, batch(n)))
            t_on.append(run(on, batch(n)))
        a, b = statistics.median(t_off), statistics.median(t_on)
        print(f"  {kind:9s} not searched {a:7.1f} us/task   searched (indexes kept) {b:7.1f} us/task   "
              f"+{b - a:6.1f} us (+{100 * (b - a) / a:.0f} %)", flush=True)
        for st in (off, on):
            cleanup(kind, st)
            st.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("part", choices=["worker", "search", "writes"])
    ap.add_argument("-n", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--stores", default="sqlite,postgres,redis")
    a = ap.parse_args()
    if a.part == "worker":
        bench_worker(a.n, a.repeat)
    elif a.part == "writes":
        bench_writes(a.n, a.repeat, a.stores.split(","))
    else:
        bench_search(a.records, a.stores.split(","))


if __name__ == "__main__":
    main()
