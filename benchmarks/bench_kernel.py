"""Kernel throughput: memory and sqlite brokers versus a plain queue.Queue + ThreadPoolExecutor loop,
and the kernel's footprint: import time and an idle worker's memory next to ``python -c pass``.

    uv run python benchmarks/bench_kernel.py [-n 50000] [--json benchmarks/results/kernel.json]
    uv run python benchmarks/bench_kernel.py --footprint-only

A benchmark, not a test: it prints a table and writes JSON. No-op tasks, one process.
"""

from __future__ import annotations

import argparse
import os
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

os.environ.setdefault("BOOSTKERNEL_DATA_DIR", tempfile.mkdtemp(prefix="bk-bench-"))

from _common import booster_run as run_booster  # noqa: E402
from _common import write_json  # noqa: E402


def plain_loop(n: int, workers: int) -> dict[str, float]:
    """The baseline: a producer fills queue.Queue, a dispatcher hands items to a ThreadPoolExecutor."""
    q: queue.Queue[Any] = queue.Queue()
    done = threading.Semaphore(0)

    def noop(x: int) -> None:
        done.release()

    t0 = time.perf_counter()
    for i in range(n):
        q.put(i)
    t_pub = time.perf_counter() - t0
    pool = ThreadPoolExecutor(workers)
    t1 = time.perf_counter()

    def dispatch() -> None:
        for _ in range(n):
            pool.submit(noop, q.get())

    threading.Thread(target=dispatch).start()
    for _ in range(n):
        done.acquire()
    t_con = time.perf_counter() - t1
    pool.shutdown()
    return {"publish_per_s": n / t_pub, "consume_per_s": n / t_con}


def booster_run(n: int, broker: str, concurrency: str, workers: int, batch: bool) -> dict[str, float]:
    return run_booster(n, concurrency=concurrency, workers=workers, batch=batch, name=f"bench_{broker}", broker=broker)


def per_message_overhead(n: int) -> float:
    """µs the kernel adds per message: solo on memory, minus the bare function call."""
    r = booster_run(n, "memory", "solo", 1, batch=True)
    return 1e6 / r["consume_per_s"]


def _median_ms(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


_IDLE_WORKER = """
from boostkernel import boost

@boost({queue!r}, broker="sqlite", data_dir={data!r})
def idle(x: int) -> None:
    pass
"""


def idle_worker_rss(settle: float = 3.0) -> float:
    """RSS (MB) of ``boostkernel worker`` consuming one empty sqlite queue, after ``settle`` seconds idle."""
    with tempfile.TemporaryDirectory(prefix="bk-idle-") as tmp:
        mod = os.path.join(tmp, "idle_tasks.py")
        with open(mod, "w") as fh:
            fh.write(textwrap.dedent(_IDLE_WORKER.format(queue=f"idle_{uuid.uuid4().hex[:6]}", data=tmp)))
        log = os.path.join(tmp, "worker.log")
        with open(log, "wb") as err:
            proc = subprocess.Popen([sys.executable, "-m", "boostkernel", "worker", mod], stderr=err,
                                    stdout=subprocess.DEVNULL, cwd=tmp)
        try:
            deadline = time.monotonic() + 60
            while "consuming" not in open(log).read():
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"worker did not start: {open(log).read()}")
                time.sleep(0.1)
            time.sleep(settle)
            return _rss_mb(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


def python_rss() -> float:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(1.0)
        return _rss_mb(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def footprint(runs: int = 15) -> dict[str, float]:
    py = sys.executable
    out = {
        "python_c_pass_ms": _median_ms([py, "-c", "pass"], runs),
        "import_boostkernel_ms": _median_ms([py, "-c", "import boostkernel"], runs),
        "from_boostkernel_import_boost_ms": _median_ms([py, "-c", "from boostkernel import boost"], runs),
        "plugins_list_json_ms": _median_ms([py, "-m", "boostkernel", "plugins", "list", "--json"], max(3, runs // 3)),
        "python_idle_rss_mb": python_rss(),
        "idle_sqlite_worker_rss_mb": idle_worker_rss(),
    }
    print(f"python -c pass                         {out['python_c_pass_ms']:8.1f} ms (median of {runs})")
    print(f"python -c 'import boostkernel'         {out['import_boostkernel_ms']:8.1f} ms "
          f"(+{out['import_boostkernel_ms'] - out['python_c_pass_ms']:.1f}; target <= 100 ms)")
    print(f"python -c 'from boostkernel import boost' {out['from_boostkernel_import_boost_ms']:6.1f} ms")
    print(f"boostkernel plugins list --json         {out['plugins_list_json_ms']:8.1f} ms (target <= 300 ms)")
    print(f"idle python process                     {out['python_idle_rss_mb']:8.1f} MB RSS")
    print(f"idle sqlite worker (boostkernel worker) {out['idle_sqlite_worker_rss_mb']:8.1f} MB RSS (target <= 30 MB)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=50_000)
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--json", default="benchmarks/results/kernel.json")
    ap.add_argument("--footprint-only", action="store_true", help="Only import time and idle memory.")
    a = ap.parse_args()
    fp = footprint()
    if a.footprint_only:
        return
    n, w = a.n, a.workers
    rows: list[dict[str, Any]] = []

    def add(name: str, r: dict[str, float]) -> None:
        rows.append({"name": name, **r})
        print(f"{name:55s} publish {r['publish_per_s']:>10,.0f}/s   consume {r['consume_per_s']:>10,.0f}/s",
              flush=True)

    add(f"plain queue.Queue + ThreadPoolExecutor({w})", plain_loop(n, w))
    add(f"boostkernel memory, threads({w}), push one by one", booster_run(n, "memory", "threads", w, False))
    add(f"boostkernel memory, threads({w}), push_many", booster_run(n, "memory", "threads", w, True))
    add("boostkernel memory, solo", booster_run(n, "memory", "solo", 1, True))
    add("boostkernel memory, asyncio(100)", booster_run(n, "memory", "asyncio", 100, True))
    ns = min(n, 20_000)
    add(f"boostkernel sqlite, threads({w}), push one by one", booster_run(ns, "sqlite", "threads", w, False))
    add(f"boostkernel sqlite, threads({w}), push_many", booster_run(ns, "sqlite", "threads", w, True))
    add("boostkernel sqlite, solo", booster_run(ns, "sqlite", "solo", 1, True))
    overhead = per_message_overhead(n)
    base = rows[0]["consume_per_s"]
    ratio = rows[2]["consume_per_s"] / base
    print(f"\nkernel per-message cost (memory broker, solo, no-op task): {overhead:.1f} µs")
    print(f"memory/threads end to end vs plain loop: {ratio:.0%} (target >= 50%)")
    out = {"n": n, "workers": w, "python": sys.version.split()[0], "rows": rows, "footprint": fp,
           "per_message_us": overhead, "memory_threads_vs_plain": ratio, "when": time.strftime("%Y-%m-%d %H:%M")}
    write_json(a.json, out, say=False)


if __name__ == "__main__":
    main()
