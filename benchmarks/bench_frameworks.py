"""Overhead of boostkernel's framework brokers versus each framework used directly (same broker, same run).

    uv run python benchmarks/bench_frameworks.py                 # all four on redis://127.0.0.1:6379/12
    uv run python benchmarks/bench_frameworks.py -n 2000 --frameworks celery,rq --json

For each framework, two measurements, each in a fresh child process (celery's worker runs once per
process), on the same Redis database, one after the other:

* **direct** — the framework's own API with the settings boostkernel uses (JSON, late acks where the
  framework has them, no result backend): publish ``n`` no-op tasks in a loop (``publish_per_s``), then
  start the framework's worker in-process with the same worker type and thread count as boostkernel's and
  time until the ``n`` tasks ran (``consume_per_s``, from the first to the last completion);
* **boostkernel** — ``@boost(q, broker=<framework>)``: ``push`` ``n`` times, then ``consume()``.

The task counts its own runs in the worker process (no extra broker round trip). The overhead column is
``1 - boostkernel / direct``. If ``benchmarks/peers/<name>_bench.py`` exists (the framework's own CLI
worker, measured by another script), its ``run(broker_url, n, concurrency)`` figures are shown as a third,
informative row: a different worker setup, not part of the overhead.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_URL = "redis://127.0.0.1:6379/12"
FRAMEWORKS = ("celery", "dramatiq", "huey", "rq")


class Counter:
    def __init__(self, n: int) -> None:
        self.n, self.done, self.first, self.last = n, 0, 0.0, 0.0
        self.publish_cpu = 0.0
        """Process CPU seconds of the publish loop (less sensitive than wall time to a busy machine)."""
        self.lock = threading.Lock()
        self.all_done = threading.Event()

    def hit(self) -> None:
        with self.lock:
            self.done += 1
            now = time.perf_counter()
            if self.done == 1:
                self.first = now
            self.last = now
            if self.done >= self.n:
                self.all_done.set()

    def rate(self) -> float:
        return (self.n - 1) / (self.last - self.first) if self.last > self.first else float("nan")


def _wait(counter: Counter, timeout: float) -> None:
    if not counter.all_done.wait(timeout):
        raise SystemExit(f"only {counter.done}/{counter.n} tasks ran within {timeout}s")


# --- direct use of each framework (same settings as the boostkernel plugin) -------------------------

def direct_celery(url: str, n: int, conc: int, counter: Counter) -> float:
    from celery import Celery
    from celery.worker import WorkController

    q = f"bench_direct_{uuid.uuid4().hex[:8]}"
    app = Celery("bench", broker=url, set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"], result_backend=None, task_ignore_result=True,
                    task_acks_late=True, worker_prefetch_multiplier=1, worker_hijack_root_logger=False,
                    broker_connection_retry_on_startup=True, worker_enable_remote_control=False)
    def noop(self: Any, i: int) -> None:
        counter.hit()

    task = app.task(name=q, bind=True, ignore_result=True, acks_late=True)(noop)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        task.apply_async(args=[i], queue=q)
    pub = n / (time.perf_counter() - t0)
    counter.publish_cpu = time.process_time() - c0
    w = WorkController(app=app, queues=[q], concurrency=conc, pool="threads", without_heartbeat=True,
                       without_mingle=True, without_gossip=True, loglevel="WARNING")
    threading.Thread(target=w.start, daemon=True).start()
    _wait(counter, 300)
    return pub


def direct_dramatiq(url: str, n: int, conc: int, counter: Counter) -> float:
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    q = f"bench_direct_{uuid.uuid4().hex[:8]}"
    broker = RedisBroker(url=url)

    def noop(i: int) -> None:
        counter.hit()

    actor = dramatiq.actor(noop, actor_name=q, queue_name=q, broker=broker, max_retries=0)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        actor.send(i)
    pub = n / (time.perf_counter() - t0)
    counter.publish_cpu = time.process_time() - c0
    worker = dramatiq.Worker(broker, queues={q}, worker_threads=conc, worker_timeout=100)
    worker.start()
    _wait(counter, 300)
    worker.stop()
    broker.flush(q)
    return pub


def direct_huey(url: str, n: int, conc: int, counter: Counter) -> float:
    from huey import RedisHuey
    from huey.consumer import Consumer

    q = f"bench_direct_{uuid.uuid4().hex[:8]}"
    h = RedisHuey(name=q, url=url, results=False, utc=True, blocking=True, read_timeout=1)

    @h.task(name=q)
    def noop(i: int) -> None:
        counter.hit()

    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        noop(i)
    pub = n / (time.perf_counter() - t0)
    counter.publish_cpu = time.process_time() - c0

    class C(Consumer):  # type: ignore[misc]
        def _set_signal_handlers(self) -> None:
            pass

    c = C(h, workers=conc, worker_type="thread", periodic=False, initial_delay=0.05, max_delay=1.0,
          check_worker_health=False)
    c.start()
    _wait(counter, 300)
    c.stop(graceful=True)
    return pub


_rq_counter: Counter | None = None


def rq_noop(i: int) -> None:
    assert _rq_counter is not None
    _rq_counter.hit()


def direct_rq(url: str, n: int, conc: int, counter: Counter) -> float:
    global _rq_counter
    import redis
    from rq import Queue, SimpleWorker
    from rq.serializers import JSONSerializer
    from rq.timeouts import TimerDeathPenalty

    _rq_counter = counter
    q = f"bench_direct_{uuid.uuid4().hex[:8]}"
    conn = redis.Redis.from_url(url)
    queue = Queue(q, connection=conn, serializer=JSONSerializer)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        queue.enqueue_call("bench_frameworks.rq_noop", args=(i,), result_ttl=0)
    pub = n / (time.perf_counter() - t0)
    counter.publish_cpu = time.process_time() - c0

    class W(SimpleWorker):
        death_penalty_class = TimerDeathPenalty

        def _install_signal_handlers(self) -> None:
            pass

    workers = [W([queue], connection=conn, serializer=JSONSerializer) for _ in range(conc)]
    for w in workers:
        threading.Thread(target=w.work, kwargs={"logging_level": "WARNING"}, daemon=True).start()
    _wait(counter, 300)
    return pub


# --- the same through boostkernel -------------------------------------------------------------------

def via_boostkernel(framework: str, url: str, n: int, conc: int, counter: Counter) -> float:
    from boostkernel import boost

    q = f"bench_bk_{framework}_{uuid.uuid4().hex[:8]}"

    def noop(i: int) -> None:
        counter.hit()

    b = boost(q, broker=framework, broker_url=url, workers=conc, validate_args=True)(noop)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        b.push(i)
    pub = n / (time.perf_counter() - t0)
    counter.publish_cpu = time.process_time() - c0
    b.consume()
    _wait(counter, 300)
    b.stop(10)
    return pub


def child(framework: str, mode: str, url: str, n: int, conc: int) -> dict[str, Any]:
    import logging

    logging.basicConfig(level=logging.ERROR)
    counter = Counter(n)
    cpu0 = time.process_time()
    if mode == "direct":
        sys.modules.setdefault("bench_frameworks", sys.modules[__name__])
        pub = globals()[f"direct_{framework}"](url, n, conc, counter)
    else:
        pub = via_boostkernel(framework, url, n, conc, counter)
    cpu_total = time.process_time() - cpu0
    return {"framework": framework, "mode": mode, "publish_per_s": pub, "consume_per_s": counter.rate(),
            "publish_cpu_us": counter.publish_cpu / n * 1e6,
            "consume_cpu_us": (cpu_total - counter.publish_cpu) / n * 1e6}


def run_child(framework: str, mode: str, url: str, n: int, conc: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": f"{Path(__file__).parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, __file__, "--child", framework, mode, "--url", url, "-n", str(n),
                           "-c", str(conc)], capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    if proc.returncode != 0:
        return {"framework": framework, "mode": mode, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _median(framework: str, mode: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    import statistics

    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"framework": framework, "mode": mode, "error": runs[-1].get("error")}
    out: dict[str, Any] = {"framework": framework, "mode": mode, "runs": len(ok)}
    for key in ("publish_per_s", "consume_per_s"):
        vals = [r[key] for r in ok]
        out[key] = statistics.median(vals)
        out[key.replace("_per_s", "_range")] = [min(vals), max(vals)]
    for key in ("publish_cpu_us", "consume_cpu_us"):
        out[key] = statistics.median(r[key] for r in ok)
    return out


def peer(framework: str, url: str, n: int, conc: int) -> dict[str, Any] | None:
    path = Path(__file__).parent / "peers" / f"{framework}_bench.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location(f"peer_{framework}_bench", path)
    if spec is None or spec.loader is None:
        return None
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
        out = mod.run(url, n, conc)
    except (Exception, SystemExit) as exc:
        return {"framework": framework, "mode": "peer script", "error": [f"{type(exc).__name__}: {exc}"]}
    return {"framework": framework, "mode": "peer script (own CLI worker)",
            "publish_per_s": out.get("publish_per_s"), "consume_per_s": out.get("consume_per_s")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default=os.environ.get("BENCH_REDIS_URL", DEFAULT_URL))
    ap.add_argument("-n", type=int, default=3000)
    ap.add_argument("-c", "--concurrency", type=int, default=8)
    ap.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    ap.add_argument("--repeat", type=int, default=3, help="runs per mode (medians are reported)")
    ap.add_argument("--peers", action="store_true", help="also run benchmarks/peers/<name>_bench.py if present")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", nargs=2, metavar=("FRAMEWORK", "MODE"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child[0], a.child[1], a.url, a.n, a.concurrency)), flush=True)
        return
    rows: list[dict[str, Any]] = []
    for fw in a.frameworks.split(","):
        runs: dict[str, list[dict[str, Any]]] = {"direct": [], "boostkernel": []}
        for r in range(a.repeat):  # interleaved, alternating which goes first: a busy machine drifts
            order = ("direct", "boostkernel") if r % 2 == 0 else ("boostkernel", "direct")
            for mode in order:
                runs[mode].append(run_child(fw, mode, a.url, a.n, a.concurrency))
        direct, via = _median(fw, "direct", runs["direct"]), _median(fw, "boostkernel", runs["boostkernel"])
        for key in ("publish_per_s", "consume_per_s"):
            if key in direct and key in via:
                via[key.replace("_per_s", "_overhead")] = 1 - via[key] / direct[key]
        for key in ("publish_cpu_us", "consume_cpu_us"):
            if key in direct and key in via:
                via[key.replace("_us", "_extra_us")] = via[key] - direct[key]
        rows += [direct, via]
        if a.peers:
            p = peer(fw, a.url, a.n, a.concurrency)
            if p:
                rows.append(p)
    if a.json:
        print(json.dumps({"n": a.n, "concurrency": a.concurrency, "url": a.url, "rows": rows}, indent=1))
        return
    print(f"n={a.n} no-op tasks, {a.concurrency} worker threads, broker {a.url}, median of {a.repeat} "
          "interleaved runs; wall rates (range), overhead = 1 - boostkernel/direct; CPU = process CPU µs per task")
    print(f"{'framework':9} {'mode':28} {'publish/s':>9} {'consume/s':>9} {'pub ovh':>8} {'cons ovh':>8} "
          f"{'pub CPU':>8} {'cons CPU':>8} {'+pub CPU':>8} {'+cons CPU':>9}")
    for r in rows:
        if "error" in r:
            print(f"{r['framework']:9} {r['mode']:28} error: {r['error']}")
            continue

        def f(k: str, fmt: str, r: dict[str, Any] = r) -> str:
            return format(r[k], fmt) if r.get(k) is not None else ""

        pct = {k: f"{100 * r[k]:.1f}%" if k in r else "" for k in ("publish_overhead", "consume_overhead")}
        print(f"{r['framework']:9} {r['mode']:28} {f('publish_per_s', '9.0f'):>9} {f('consume_per_s', '9.0f'):>9} "
              f"{pct['publish_overhead']:>8} {pct['consume_overhead']:>8} {f('publish_cpu_us', '8.0f'):>8} "
              f"{f('consume_cpu_us', '8.0f'):>8} {f('publish_cpu_extra_us', '+8.0f'):>8} "
              f"{f('consume_cpu_extra_us', '+9.0f'):>9}")
        if "publish_range" in r:
            print(f"{'':38} range publish {r['publish_range'][0]:.0f}-{r['publish_range'][1]:.0f}/s, "
                  f"consume {r['consume_range'][0]:.0f}-{r['consume_range'][1]:.0f}/s")


if __name__ == "__main__":
    main()
