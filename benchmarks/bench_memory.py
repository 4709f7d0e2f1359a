"""Memory held per queued message: the memory broker's queue and the Redis broker's auto-batch buffer.

    uv run python benchmarks/bench_memory.py [-n 100000] [--url redis://127.0.0.1:6379/14] [--json out.json]

For each row, ``n`` no-op messages are published with ``push()`` (one by one, as a user would) and the
bytes they keep alive are measured with ``tracemalloc`` (the allocation that outlives the push: queue
entries, ids, bodies) after a full garbage collection, divided by ``n``. The process's peak RSS growth is
printed beside it (coarser: the allocator keeps freed pages).

* ``memory``: messages queued in the memory broker (no consumer);
* ``redis auto-batch buffer``: ``broker_options={"auto_batch": True}`` with the buffer's sender held back
  (as when Redis is slower than the producer), so every message sits in the buffer; then released and
  flushed. Skipped when Redis is unreachable.

Target (checked and printed): <= 1,200 bytes per queued message on both.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import threading
import tracemalloc
import uuid
from collections.abc import Callable
from typing import Any

TARGET = 1200


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(n: int, setup: Callable[[], Callable[[int], None]], after: Callable[[], None] | None = None
            ) -> dict[str, Any]:
    push = setup()
    push(-1)  # warm: first-use allocations (pools, threads, caches) are not per message
    gc.collect()
    rss0 = rss_mb()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        push(i)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    row = {"n": n, "bytes_per_message": round(held / n, 1), "peak_rss_growth_mb": round(rss_mb() - rss0, 1)}
    if after is not None:
        after()
    return row


def memory_row(n: int) -> dict[str, Any]:
    from boostkernel import boost

    queue = f"bench_mem_{uuid.uuid4().hex[:8]}"

    @boost(queue, broker="memory")
    def noop(i: int) -> None:
        pass

    def setup() -> Callable[[int], None]:
        return lambda i: noop.push(i) and None

    row = measure(n, setup, lambda: noop.purge() and None)
    return {"name": "memory broker queue", **row}


def redis_row(n: int, url: str) -> dict[str, Any]:
    from boostkernel import boost

    queue = f"bench_mem_{uuid.uuid4().hex[:8]}"

    @boost(queue, broker="redis", broker_url=url, broker_options={"auto_batch": True})
    def noop(i: int) -> None:
        pass

    gate = threading.Event()
    broker = noop.broker
    real_send = broker._buffer.send

    def held_back(items: list[Any]) -> None:
        gate.wait()
        real_send(items)

    def setup() -> Callable[[int], None]:
        broker._buffer.send = held_back
        return lambda i: noop.push(i) and None

    def after() -> None:
        gate.set()
        broker.flush(60)
        noop.purge()

    row = measure(n, setup, after)
    return {"name": "redis auto-batch buffer", **row}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=100_000)
    ap.add_argument("--url", default="redis://127.0.0.1:6379/14")
    ap.add_argument("--json", help="write the rows to this file")
    a = ap.parse_args()
    rows = [memory_row(a.n)]
    try:
        import redis

        redis.Redis.from_url(a.url, socket_connect_timeout=1).ping()
        rows.append(redis_row(a.n, a.url))
    except Exception as exc:  # noqa: BLE001 - a benchmark row is skipped, not failed, without Redis
        print(f"redis row skipped: {exc}")
    ok = True
    print(f"{'row':28} {'n':>8} {'bytes/msg':>10} {'peak RSS +MB':>13}  target <= {TARGET} B")
    for r in rows:
        passed = r["bytes_per_message"] <= TARGET
        ok &= passed
        print(f"{r['name']:28} {r['n']:>8} {r['bytes_per_message']:>10.1f} {r['peak_rss_growth_mb']:>13.1f}  "
              f"{'PASS' if passed else 'FAIL'}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rows": rows, "target_bytes": TARGET}, f, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
