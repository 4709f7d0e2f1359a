"""Per-message cost of the control chain (all controls off vs no chain at all) and of each first-half control.

    uv run python benchmarks/bench_controls.py [-n 20000] [--repeat 5] [--json benchmarks/results/controls.json]

Memory broker, solo concurrency (the task runs inline in the consumer's thread, so the figures are the
kernel's and the controls' own cost, not a pool's), a no-op task. Each configuration consumes N messages
published beforehand (publishing is not timed); the best of ``--repeat`` runs is kept.

* "no chain at all": the kernel's consumer with the chain taken out of ``run_one`` (no before list, no
  composed ``invoke``: the function is called directly; task context, settlement are unchanged).
* "chain, every control off": the real consumer with every control parameter at its default.
* one line per control switched on (with limits that never throttle, so the figure is the control's
  bookkeeping cost). timeout and cancel cannot run under solo (decoration refuses it), so they are
  measured with concurrency="threads", workers=1 and compared with the threads baseline.

A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from typing import Any

os.environ.setdefault("BOOSTKERNEL_DATA_DIR", tempfile.mkdtemp(prefix="bk-bench-controls-"))

from boostkernel import boost  # noqa: E402
from boostkernel.booster import REGISTRY  # noqa: E402
from boostkernel.consumer import Consumer, _consumers, _consumers_lock, _current  # noqa: E402
from boostkernel.logs import current_task_id  # noqa: E402

SOLO = {"concurrency": "solo"}
THREADS = {"concurrency": "threads", "workers": 1}
CONFIGS: list[tuple[str, str, dict[str, Any]]] = [
    # (label, baseline label it is compared with, params)
    ("no chain at all (solo)", "", {**SOLO, "_nochain": True}),
    ("chain, every control off (solo)", "no chain at all (solo)", SOLO),
    ("ratelimit qps=1e7", "chain, every control off (solo)", {**SOLO, "qps": 1e7}),
    ("ratelimit qps=1e7 global (sqlite store)", "chain, every control off (solo)",
     {**SOLO, "qps": 1e7, "qps_scope": "global"}),
    ("retry max_retries=3 (worker)", "chain, every control off (solo)", {**SOLO, "max_retries": 3}),
    ("retry max_retries=3 (republish)", "chain, every control off (solo)",
     {**SOLO, "max_retries": 3, "retry_mode": "republish"}),
    ("pause pausable=True (sqlite store)", "chain, every control off (solo)", {**SOLO, "pausable": True}),
    ("timewindow '* * * * *'", "chain, every control off (solo)", {**SOLO, "allowed_window": "* * * * *"}),
    ("circuitbreaker (5, 30)", "chain, every control off (solo)", {**SOLO, "circuit_breaker": (5, 30.0)}),
    ("quota (1e9, 3600) (sqlite store)", "chain, every control off (solo)", {**SOLO, "quota": (10**9, 3600.0)}),
    ("quota (1e9, 3600) (memory store)", "chain, every control off (solo)",
     {**SOLO, "quota": (10**9, 3600.0), "store": "memory"}),
    ("chain, every control off (threads x1)", "", THREADS),
    ("timeout=60 (threads x1)", "chain, every control off (threads x1)", {**THREADS, "timeout": 60.0}),
    ("cancellable (threads x1, sqlite store)", "chain, every control off (threads x1)",
     {**THREADS, "cancellable": True}),
]


class NoChainConsumer(Consumer):
    """The kernel's ``run_one`` with the chain taken out: no before list, no composed ``invoke``, the function
    called directly (task context, logging context, settlement and ``_finish`` are the same)."""

    def run_one(self, delivery: Any) -> None:
        ctx = self._begin(delivery)
        if ctx is None:
            return
        token = _current.set(ctx)
        tid = current_task_id.set(ctx.envelope.id)
        fn = self.booster.fn
        try:
            e = ctx.envelope
            ctx.result = fn(*e.args, **e.kwargs)
            ctx.status = "success"
        except BaseException as exc:  # noqa: BLE001
            self._failed(ctx, exc)
        finally:
            self._finish(ctx)
            current_task_id.reset(tid)
            _current.reset(token)


def consume_run(n: int, params: dict[str, Any]) -> float:
    """Seconds to consume ``n`` messages with these parameters (memory broker)."""
    params = dict(params)
    nochain = params.pop("_nochain", False)
    queue = f"bench_c_{uuid.uuid4().hex[:8]}"

    def noop(i: int) -> None:
        return None

    noop.__qualname__ = f"noop_{queue}"
    b = boost(queue, broker="memory", validate_args=False, **params)(noop)
    b.push_many([(i,) for i in range(n)], chunk_size=5000)
    consumer = (NoChainConsumer if nochain else Consumer)(b)
    t0 = time.perf_counter()
    consumer.start()
    with _consumers_lock:
        _consumers.append(consumer)
    while consumer.processed < n:
        time.sleep(0.0005)
    elapsed = time.perf_counter() - t0
    consumer.stop()
    REGISTRY.pop(queue, None)
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import logging

    logging.getLogger("boostkernel").setLevel(logging.WARNING)
    consume_run(2000, SOLO)  # warm up imports and the memory broker
    rows: dict[str, dict[str, Any]] = {}
    # Rounds interleave the configurations, so a slow spell of the machine hits them all alike.
    samples: dict[str, list[float]] = {label: [] for label, _, _ in CONFIGS}
    for _ in range(args.repeat):
        for label, _, params in CONFIGS:
            samples[label].append(consume_run(args.n, params) / args.n * 1e6)
    for label, base, _ in CONFIGS:
        runs = samples[label]
        best, med = min(runs), statistics.median(runs)
        spread = (max(runs) - best)
        rows[label] = {"us_per_msg": round(best, 2), "median": round(med, 2), "spread": round(spread, 2),
                       "baseline": base}
        extra = ""
        if base:
            diff = best - rows[base]["us_per_msg"]
            rows[label]["overhead_us"] = round(diff, 2)
            extra = f"  overhead {diff:+6.2f} us (baseline spread {rows[base]['spread']:.2f})"
        print(f"{label:45s} {best:8.2f} us/msg (median {med:7.2f}, spread {spread:5.2f}){extra}", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"n": args.n, "repeat": args.repeat, "python": sys.version.split()[0], "rows": rows}, fh,
                      indent=2)


if __name__ == "__main__":
    main()
