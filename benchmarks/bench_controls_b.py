"""Per-message cost of the second-half controls (dedup, expiry, stats, results) and of a schedule tick.

    uv run python benchmarks/bench_controls_b.py [-n 20000] [--repeat 5] [--json benchmarks/results/controls-b.json]

Memory broker, solo concurrency (the task runs inline in the consumer's thread, so the figures are the
kernel's and the control's own cost, not a pool's), a no-op task. Each configuration consumes N messages
published beforehand (publishing is not timed); the best of ``--repeat`` runs is kept. The overhead of a
control is its µs/message minus the baseline's. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from typing import Any

os.environ.setdefault("BOOSTKERNEL_DATA_DIR", tempfile.mkdtemp(prefix="bk-bench-b-"))

from boostkernel import boost  # noqa: E402
from boostkernel.booster import REGISTRY  # noqa: E402

CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("baseline (no control)", {}),
    ("expiry (expires=3600)", {"expires": 3600}),
    ("stats (stats_interval=60)", {"stats_interval": 60}),
    ("dedup (memory store)", {"dedup": True, "store": "memory"}),
    ("dedup (sqlite store)", {"dedup": True, "store": "sqlite"}),
    ("results (memory store)", {"results": True, "store": "memory"}),
    ("results (sqlite store)", {"results": True, "store": "sqlite"}),
]


def consume_run(n: int, params: dict[str, Any]) -> float:
    """Seconds to consume ``n`` messages with these parameters (memory broker, solo)."""
    queue = f"bench_b_{uuid.uuid4().hex[:8]}"

    def noop(i: int) -> None:
        return None

    noop.__qualname__ = f"noop_{queue}"
    b = boost(queue, broker="memory", concurrency="solo", validate_args=False, **params)(noop)
    b.push_many([(i,) for i in range(n)], chunk_size=5000)  # distinct arguments: dedup runs every one
    t0 = time.perf_counter()
    b.consume()
    consumer = b._consumer
    assert consumer is not None
    while consumer.processed < n:
        time.sleep(0.0005)
    elapsed = time.perf_counter() - t0
    b.stop()
    REGISTRY.pop(queue, None)
    return elapsed


def hook_cost(n: int, params: dict[str, Any]) -> float:
    """µs per message spent in the controls' own hooks (before + after), called directly: the part of the
    per-message cost that belongs to the control, without the consume loop's noise."""
    from boostkernel.broker import Delivery
    from boostkernel.control import TaskContext, overrides
    from boostkernel.message import Envelope

    queue = f"bench_h_{uuid.uuid4().hex[:8]}"

    def noop(i: int) -> None:
        return None

    noop.__qualname__ = f"noop_{queue}"
    b = boost(queue, broker="memory", concurrency="solo", validate_args=False, **params)(noop)
    controls = b.make_controls()
    befores = [c.before for c in controls if overrides(c, "before")]
    afters = [c.after for c in controls if overrides(c, "after")]
    envs = [Envelope(queue, [i], {}) for i in range(n)]
    t0 = time.perf_counter()
    for env in envs:
        ctx = TaskContext(env, Delivery(env.id, b"", None), b, "bench")
        for f in befores:
            f(ctx)
        ctx.status = "success"
        ctx.finished_at = ctx.started_at
        for f in afters:
            f(ctx)
    elapsed = time.perf_counter() - t0
    REGISTRY.pop(queue, None)
    return elapsed / n * 1e6


def schedule_tick_cost(n: int) -> float | None:
    """µs per scheduled tick: claim in the store (memory) + publish (memory broker)."""
    try:
        from boostkernel_schedule.api import Scheduler
    except ImportError:
        return None
    queue = f"bench_sched_{uuid.uuid4().hex[:8]}"

    def noop(i: int = 0) -> None:
        return None

    noop.__qualname__ = f"noop_{queue}"
    b = boost(queue, broker="memory", store="memory")(noop)
    b.schedule(interval=1, kwargs={"i": 1}, id="bench")
    s = Scheduler([b])
    s.sync()
    base = _dt.datetime.now(_dt.timezone.utc)
    import logging

    logging.getLogger(f"boostkernel.queue.{queue}").setLevel(logging.WARNING)
    t0 = time.perf_counter()
    for i in range(n):
        s._fire(queue, "bench", base + _dt.timedelta(milliseconds=i))
    elapsed = time.perf_counter() - t0
    assert b.count() == n
    b.purge()
    REGISTRY.pop(queue, None)
    return elapsed / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    n = args.n
    rows: list[dict[str, Any]] = []
    consume_run(2000, {})  # warm up imports and code paths
    base_us: float | None = None
    samples: dict[str, list[float]] = {label: [] for label, _ in CONFIGS}
    hooks: dict[str, list[float]] = {label: [] for label, _ in CONFIGS}
    rng = random.Random(7)
    for _ in range(args.repeat):  # interleaved in a shuffled order, so load bursts hit every configuration
        order = list(CONFIGS)
        rng.shuffle(order)
        for label, params in order:
            samples[label].append(consume_run(n, params) / n * 1e6)
            hooks[label].append(hook_cost(min(n, 10_000), params))
    base_hook = min(hooks[CONFIGS[0][0]])
    for label, params in CONFIGS:
        runs = samples[label]
        best = min(runs)
        if base_us is None:
            base_us = best
        rows.append({"config": label, "params": params, "us_per_msg": round(best, 2),
                     "median_us_per_msg": round(statistics.median(runs), 2),
                     "overhead_us": round(best - base_us, 2), "msgs_per_s": round(1e6 / best),
                     "hook_us": round(min(hooks[label]) - base_hook, 2)})
    tick = schedule_tick_cost(min(n, 5000))
    print(f"python {sys.version.split()[0]}, {n} messages x {args.repeat} runs, memory broker, solo concurrency, "
          "no-op task (best run; median in brackets)")
    print(f"{'configuration':<28} {'control hooks µs/msg':>21} {'end-to-end µs/msg':>18} {'(median)':>9} "
          f"{'overhead µs':>12} {'msgs/s':>9}")
    for r in rows:
        print(f"{r['config']:<28} {r['hook_us']:>21.2f} {r['us_per_msg']:>18.2f} {r['median_us_per_msg']:>9.2f} "
              f"{r['overhead_us']:>12.2f} {r['msgs_per_s']:>9}")
    if tick is not None:
        print(f"{'schedule tick (claim+publish)':<28} {tick:>8.2f} µs per tick (no per-message cost on consumers)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"n": n, "repeat": args.repeat, "python": sys.version.split()[0], "rows": rows,
                       "schedule_tick_us": tick}, fh, indent=2)


if __name__ == "__main__":
    main()
