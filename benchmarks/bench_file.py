"""The ``file`` broker beside a raw rename loop with the same guarantee, in one run.

    uv run python benchmarks/bench_file.py            # -n 20000 --workers 8 --dir /tmp/… --json …

No-op tasks in a fresh directory (removed at the end). The raw loop is what the broker does, by hand:
publish = write a temporary file + rename(2) it into ``ready/``; consume = list ``ready/`` (sorted),
rename(2) each file into an in-flight folder, read it, run the no-op, then unlink it (acked after the
task: at-least-once, like the broker). The broker adds heartbeats, the running journal, delivery counts in
the names, JSON envelopes and the kernel's consume loop. *consume/s* runs from ``consume()`` (or the raw
loop's start) until the last task finished.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any

from _common import booster_run, write_json


def raw(base: str, n: int) -> dict[str, float]:
    ready, inflight, tmp = (os.path.join(base, "raw", d) for d in ("ready", "inflight", "tmp"))
    for d in (ready, inflight, tmp):
        os.makedirs(d, exist_ok=True)
    body = json.dumps({"x": 0}).encode()
    t0 = time.perf_counter()
    for i in range(n):
        name = f"{time.time_ns():019d}-{i}"
        t = os.path.join(tmp, name)
        with open(t, "wb") as f:
            f.write(body)
        os.rename(t, os.path.join(ready, name))
    t_pub = time.perf_counter() - t0
    done = 0
    t1 = time.perf_counter()
    while done < n:
        for name in sorted(os.listdir(ready)):
            dst = os.path.join(inflight, name)
            try:
                os.rename(os.path.join(ready, name), dst)
            except FileNotFoundError:
                continue
            with open(dst, "rb") as f:
                json.loads(f.read())  # "run" the task
            os.unlink(dst)  # ack after the task
            done += 1
    return {"publish_per_s": n / t_pub, "consume_per_s": n / (time.perf_counter() - t1)}


def broker_loop(base: str, n: int) -> dict[str, float]:
    """The FileBroker API without the kernel: publish_many, then fetch 64 / started / ack."""
    from boostkernel_file.broker import FileBroker

    from boostkernel.broker import Outgoing
    from boostkernel.message import Envelope

    b = FileBroker("loop", f"file://{base}/loop")
    msgs = []
    for i in range(n):
        env = Envelope("loop", [i])
        msgs.append(Outgoing(env.id, env.encode()))
    t0 = time.perf_counter()
    b.publish_many(msgs)
    t_pub = time.perf_counter() - t0
    t1 = time.perf_counter()
    done = 0
    while done < n:
        for d in b.fetch(64, 1.0):
            b.started(d)
            b.ack(d)
            done += 1
    t_con = time.perf_counter() - t1
    b.close()
    return {"publish_per_s": n / t_pub, "consume_per_s": n / t_con}


def kernel(base: str, n: int, concurrency: str, workers: int, batch: bool) -> dict[str, float]:
    return booster_run(n, concurrency=concurrency, workers=workers, batch=batch, name="bench_file", purge=False,
                       broker="file", broker_url=f"file://{base}/k")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20_000)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--dir", default=None, help="where the queues go (default: a new temporary directory)")
    ap.add_argument("--json", default="benchmarks/results/file.json")
    a = ap.parse_args()
    base = tempfile.mkdtemp(prefix="bk-bench-file-", dir=a.dir)
    rows: list[dict[str, Any]] = []

    def add(name: str, r: dict[str, float]) -> None:
        rows.append({"name": name, **r})
        print(f"{name:52s} publish {r['publish_per_s']:>9,.0f}/s   consume {r['consume_per_s']:>9,.0f}/s", flush=True)

    try:
        add("raw rename loop (write+rename / rename+read+unlink)", raw(base, a.n))
        add("FileBroker API: publish_many / fetch(64)+started+ack", broker_loop(base, a.n))
        add("file, solo, push one by one", kernel(base, a.n, "solo", 1, False))
        add(f"file, threads({a.workers}), push_many", kernel(base, a.n, "threads", a.workers, True))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    out = {"n": a.n, "workers": a.workers, "python": sys.version.split()[0], "rows": rows,
           "load_average": os.getloadavg(), "when": time.strftime("%Y-%m-%d %H:%M")}
    write_json(a.json, out, say=False)


if __name__ == "__main__":
    main()
