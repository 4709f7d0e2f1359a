"""Shared by the benchmark scripts (run as ``python benchmarks/bench_X.py``: this folder is on sys.path)."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from boostkernel import boost


def booster_run(n: int, *, concurrency: str, workers: int, batch: bool, name: str = "bench",
                batch_size: int | None = None, **boost_options: Any) -> dict[str, float]:
    """Publish ``n`` no-op tasks, then consume them from ``consume()`` until the last one finished (acks
    included); return publish/s and consume/s. ``batch`` publishes with ``push_many`` (in chunks of
    ``batch_size`` when given), else with ``push()`` one by one. ``boost_options`` select the broker."""
    counter = [0]
    finished = threading.Event()
    lock = threading.Lock()

    @boost(f"{name}_{concurrency}_{uuid.uuid4().hex[:6]}", concurrency=concurrency, workers=workers,
           validate_args=False, **boost_options)
    def noop(x: int) -> None:
        with lock:
            counter[0] += 1
            if counter[0] == n:
                finished.set()

    noop.purge()
    t0 = time.perf_counter()
    if batch:
        size = batch_size or n
        for i in range(0, n, size):
            noop.push_many([(j,) for j in range(i, min(n, i + size))])
    else:
        push = noop.push
        for i in range(n):
            push(i)
    t_pub = time.perf_counter() - t0
    t1 = time.perf_counter()
    noop.consume()
    if not finished.wait(600):
        raise RuntimeError(f"only {counter[0]} of {n} ran")
    t_con = time.perf_counter() - t1
    noop.stop()
    return {"publish_per_s": n / t_pub, "consume_per_s": n / t_con}
