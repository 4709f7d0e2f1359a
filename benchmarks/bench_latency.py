"""Latency: push-to-start and push-to-result, p50 / p99, idle worker and under load, all systems in one run.

    uv run python benchmarks/bench_latency.py [--probes 200] [--load-rate 300] [--json out.json]
        [--systems bk-memory,bk-sqlite,bk-redis,bk-rabbitmq,funboost-redis,celery-redis,dramatiq-redis,...]

Every system runs the same task, ``probe(tag, t_pub)``: it reads the clock when it starts and, for a probe
(``tag >= 0``), RPUSHes ``tag t_pub t_start`` to a signal list in Redis. The probing process publishes one
probe, BLPOPs the signal list and reads the clock again:

* **push-to-start** = ``t_start - t_pub`` (publish call begins → the function body begins; both clocks are
  this machine's ``time.time()``);
* **push-to-result** = signal seen by the publisher − ``t_pub``: the task ran, and its completion reached the
  publisher through one Redis RPUSH/BLPOP — the same completion path for every system (no result backend).
  boostkernel's own result path (``results=True``, ``AsyncResult.get()``) is the extra row
  ``bk-redis-results``.

Phases, each with ``--probes`` probes after 20 warm-up probes (at most 60 s per phase: a system that falls
behind the load gets fewer probes, the count is printed):

* **idle**: one probe at a time, then a random 20-60 ms pause, so the worker is back in its idle wait (a
  polling consumer shows its poll interval here);
* **load**: a separate process publishes no-op tasks (``tag = -1``) at ``--load-rate`` per second (a
  thread of the probing process for ``bk-memory``) while probes go out every 20 ms.

``raw-redis`` is the floor on this machine: a bare redis-py ``BLPOP`` loop calling the same function.
Each system's worker is a separate process started with the framework's own defaults (boostkernel:
``threads`` × 16; celery: ``celery worker`` prefork × CPU count, ``acks_late``, prefetch multiplier 1;
dramatiq: 1 process × 8 threads; funboost: ``REDIS_ACK_ABLE`` / ``RABBITMQ_AMQPSTORM``, THREADING × 50),
except ``bk-memory`` (in-process by nature). The probing loop also runs in its own process (funboost patches
``print``/logging on import). Targets (issue #12): bk-redis idle push-to-start p50 ≤ 1 ms, p99 ≤ 5 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"
sys.path.insert(0, str(PEERS))

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
AMQP_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
SIGNAL_URL = os.environ.get("LAT_SIGNAL_URL", REDIS_URL)
ALL = ["raw-redis", "bk-memory", "bk-sqlite", "bk-redis", "bk-redis-results", "bk-rabbitmq", "funboost-redis", "celery-redis",
       "dramatiq-redis", "funboost-rabbitmq", "celery-rabbitmq", "dramatiq-rabbitmq"]

SYSTEM = os.environ.get("LAT_SYSTEM", "")
QUEUE = os.environ.get("LAT_QUEUE", "lat")
SIGNAL_KEY = os.environ.get("LAT_SIGNAL_KEY", "lat:signal")
DATA_DIR = os.environ.get("LAT_DATA_DIR", "")

_signal_local = threading.local()


def _signal_client() -> Any:
    c = getattr(_signal_local, "c", None)
    if c is None:
        import redis

        c = _signal_local.c = redis.Redis.from_url(SIGNAL_URL, socket_timeout=30)
    return c


def probe(tag: int, t_pub: float) -> None:
    t0 = time.time()
    if tag >= 0:
        _signal_client().rpush(SIGNAL_KEY, f"{tag} {t_pub!r} {t0!r}")


def broker_url(system: str) -> str:
    return AMQP_URL if system.endswith("rabbitmq") else REDIS_URL


# --- the systems' task definitions (module level: the frameworks' CLIs import this module) ---------------
def make_bk(system: str, queue: str | None = None) -> Any:
    from boostkernel import boost

    kind = system.removeprefix("bk-").removesuffix("-results")
    url = {"memory": None, "sqlite": f"sqlite:///{DATA_DIR}/lat.db", "redis": REDIS_URL, "rabbitmq": AMQP_URL}[kind]

    def bk_probe(tag: int, t_pub: float) -> Any:
        probe(tag, t_pub)
        return tag

    return boost(queue or QUEUE, broker=kind, broker_url=url, data_dir=DATA_DIR or None,
                 results=system.endswith("-results"))(bk_probe)


if SYSTEM.startswith("celery"):
    from celery import Celery

    celery_app = Celery("bench_latency", broker=broker_url(SYSTEM), set_as_current=False)
    celery_app.conf.update(
        task_acks_late=True, worker_prefetch_multiplier=1, task_ignore_result=True, result_backend=None,
        task_serializer="json", accept_content=["json"], task_default_queue=QUEUE, task_default_exchange=QUEUE,
        task_default_routing_key=QUEUE, worker_hijack_root_logger=False, broker_connection_retry_on_startup=True,
        worker_enable_remote_control=False, worker_send_task_events=False,
    )
    celery_probe = celery_app.task(name="bench_latency.probe", acks_late=True, ignore_result=True,
                                   shared=False)(probe)

if SYSTEM.startswith("dramatiq"):
    import dramatiq

    if SYSTEM.endswith("redis"):
        from dramatiq.brokers.redis import RedisBroker

        dramatiq_broker: Any = RedisBroker(url=REDIS_URL, namespace=QUEUE)
    else:
        from dramatiq.brokers.rabbitmq import RabbitmqBroker
        from peerbench_common import pika_style_url

        dramatiq_broker = RabbitmqBroker(url=pika_style_url(AMQP_URL))
    dramatiq_probe = dramatiq.actor(probe, actor_name="lat_probe", queue_name=QUEUE, max_retries=0,
                                    broker=dramatiq_broker)


def make_funboost(system: str) -> Any:
    import logging

    from funboost import BoosterParams, BrokerEnum, ConcurrentModeEnum, boost

    kind = BrokerEnum.REDIS_ACK_ABLE if system.endswith("redis") else BrokerEnum.RABBITMQ_AMQPSTORM
    return boost(BoosterParams(queue_name=QUEUE, broker_kind=kind, concurrent_mode=ConcurrentModeEnum.THREADING,
                               concurrent_num=50, log_level=logging.WARNING, create_logger_file=False,
                               max_retry_times=0, is_using_rpc_mode=False))(probe)


# --- roles -------------------------------------------------------------------------------------------------
def role_worker(system: str) -> None:
    if system == "raw-redis":  # the floor: a bare redis-py BLPOP loop, no framework
        import redis

        r = redis.Redis.from_url(REDIS_URL)
        print("consuming", flush=True)
        while True:
            got = r.blpop([QUEUE], 5)
            if got is not None:
                tag, t_pub = got[1].split()
                probe(int(tag), float(t_pub))
    if system.startswith("bk-"):
        b = make_bk(system)
        b.consume()
        print("consuming", flush=True)
        b.wait()
    elif system.startswith("funboost"):
        b = make_funboost(system)
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        b.consume()
        print("consuming", flush=True)
        while True:
            time.sleep(3600)


def _publisher(system: str) -> tuple[Any, Any]:
    """(publish(tag, t_pub) -> handle, wait(handle) -> None or None)."""
    if system.startswith("bk-"):
        b = make_bk(system)
        if system == "bk-memory":
            b.consume()
        if system.endswith("-results"):
            return (lambda tag, t: b.push(tag, t)), (lambda h: h.get(10))
        return (lambda tag, t: b.push(tag, t)), None
    if system == "raw-redis":
        import redis

        raw = redis.Redis.from_url(REDIS_URL)
        return (lambda tag, t: raw.rpush(QUEUE, f"{tag} {t!r}")), None
    if system.startswith("celery"):
        return (lambda tag, t: celery_probe.apply_async((tag, t))), None
    if system.startswith("dramatiq"):
        return (lambda tag, t: dramatiq_probe.send(tag, t)), None
    if system.startswith("funboost"):
        b = make_funboost(system)
        return (lambda tag, t: b.push(tag, t)), None
    raise SystemExit(f"unknown system {system!r}")


def role_load(system: str, load_rate: float) -> None:
    publish, _ = _publisher(system)
    interval, nxt = 1.0 / load_rate, time.monotonic()
    while True:
        publish(-1, time.time())
        nxt += interval
        d = nxt - time.monotonic()
        if d > 0:
            time.sleep(d)


def role_probe(system: str, probes: int, load_rate: float, out: str) -> None:
    publish, wait = _publisher(system)
    sig = _signal_client()
    sig.delete(SIGNAL_KEY)

    def one(tag: int) -> tuple[float, float] | None:
        t_pub = time.time()
        h = publish(tag, t_pub)
        if wait is not None:
            wait(h)
            t_seen = time.time()
            got = sig.blpop([SIGNAL_KEY], 10)
        else:
            got = sig.blpop([SIGNAL_KEY], 10)
            t_seen = time.time()
        if got is None:
            return None
        _, tp, ts = got[1].decode().split()
        return float(ts) - float(tp), t_seen - float(tp)

    def phase(pause: tuple[float, float]) -> dict[str, Any]:
        start, result, lost = [], [], 0
        t_end = time.monotonic() + 60  # a system that cannot keep up with the load gets fewer probes
        for i in range(20 + probes):
            if time.monotonic() > t_end:
                break
            r = one(i)
            if r is None:
                lost += 1
            elif i >= 20:
                start.append(r[0])
                result.append(r[1])
            time.sleep(random.uniform(*pause))
        return {"start": start, "result": result, "lost": lost}

    # the worker is up when a probe comes back
    deadline = time.monotonic() + 90
    while one(-3 + 3) is None:
        if time.monotonic() > deadline:
            raise SystemExit(f"{system}: the worker never ran a probe")
    idle = phase((0.02, 0.06))
    stop = threading.Event()

    def load() -> None:
        interval, nxt = 1.0 / load_rate, time.monotonic()
        while not stop.is_set():
            publish(-1, time.time())
            nxt += interval
            d = nxt - time.monotonic()
            if d > 0:
                time.sleep(d)

    # the load comes from its own process (framework publishers are not all thread-safe), except for the
    # memory broker, whose queue lives in this process
    loader = None
    if system == "bk-memory":
        t = threading.Thread(target=load, daemon=True)
        t.start()
    else:
        loader = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--role", "load", "--system",
                                   system, "--load-rate", str(load_rate)], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2.0)  # let the stream settle
    loaded = phase((0.02, 0.02))
    stop.set()
    if loader is not None:
        loader.kill()
        loader.wait(10)
    Path(out).write_text(json.dumps({"idle": idle, "load": loaded}))
    sys.stdout.flush()
    os._exit(0)  # funboost and celery keep non-daemon threads alive


# --- harness -------------------------------------------------------------------------------------------------
def pct(xs: list[float], p: int) -> float:
    if not xs:
        return float("nan")
    if len(xs) < 2:
        return xs[0] * 1000
    return statistics.quantiles(xs, n=100, method="inclusive")[p - 1] * 1000


def worker_cmd(system: str, queue: str) -> list[str] | None:
    if system == "bk-memory":
        return None
    if system.startswith(("bk-", "funboost", "raw-")):
        return [sys.executable, str(Path(__file__).resolve()), "--role", "worker", "--system", system]
    if system.startswith("celery"):
        return [sys.executable, "-m", "celery", "-A", "bench_latency:celery_app", "worker", "--pool", "prefork",
                "--concurrency", str(os.cpu_count() or 1), "--queues", queue, "--loglevel", "WARNING",
                "--without-gossip", "--without-mingle", "--without-heartbeat"]
    if system.startswith("dramatiq"):
        return [sys.executable, "-m", "dramatiq", "bench_latency:dramatiq_broker", "--processes", "1",
                "--threads", "8", "--queues", queue]
    raise SystemExit(f"unknown system {system!r}")


def cleanup(system: str, queue: str, tmp: Path) -> None:
    import redis

    r = redis.Redis.from_url(REDIS_URL)
    for pattern in (f"*{queue}*",):
        keys = list(r.scan_iter(match=pattern, count=1000))
        if keys:
            r.delete(*keys)
    if system.endswith("rabbitmq"):
        try:
            from peerbench_common import rabbitmq_delete

            rabbitmq_delete(AMQP_URL, queues=[queue, f"{queue}.DQ", f"{queue}.XQ"], exchanges=[queue])
        except Exception as exc:
            print(f"  (cleanup of RabbitMQ queue {queue}: {exc})")
    if system.startswith("bk-") and system != "bk-memory":  # whatever is left in boostkernel's queue
        try:
            b = make_bk(system, queue)
            b.purge()
            if system.endswith("rabbitmq"):
                from peerbench_common import rabbitmq_delete

                rabbitmq_delete(AMQP_URL, queues=[queue])
        except Exception as exc:
            print(f"  (cleanup of {queue}: {exc})")


def run_system(system: str, probes: int, load_rate: float) -> dict[str, Any]:
    queue = f"lat_{system.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    env = {**os.environ, "LAT_SYSTEM": system, "LAT_QUEUE": queue, "LAT_SIGNAL_KEY": f"lat:{queue}",
           "LAT_DATA_DIR": str(tmp), "PYTHONPATH": os.pathsep.join([str(HERE), str(PEERS), str(tmp),
                                                                  os.environ.get("PYTHONPATH", "")])}
    cwd = str(tmp)
    if system.startswith("funboost"):
        import funboost_bench

        funboost_bench._write_config(tmp, broker_url(system))
        env.update({"LOG_PATH": str(tmp / "logs"), "PRINT_WRTIE_FILE_NAME": "", "SYS_STD_FILE_NAME": ""})
    worker = None
    log = open(tmp / "worker.log", "wb")  # noqa: SIM115
    try:
        cmd = worker_cmd(system, queue)
        if cmd is not None:
            worker = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        out = tmp / "probe.json"
        p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--role", "probe", "--system", system,
                            "--probes", str(probes), "--load-rate", str(load_rate), "--out", str(out)],
                           env=env, cwd=cwd, capture_output=True, timeout=600)
        if p.returncode != 0 or not out.exists():
            log.flush()
            raise RuntimeError(f"{system}: probe failed rc={p.returncode}\n{(p.stdout + p.stderr).decode()[-2000:]}"
                               f"\nworker log:\n{(tmp / 'worker.log').read_text(errors='replace')[-2000:]}")
        data = json.loads(out.read_text())
    finally:
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                pass
        if worker is not None:
            try:
                os.killpg(worker.pid, signal.SIGKILL)  # our own group: leftover pool children
            except ProcessLookupError:
                pass
        log.close()
        try:
            cleanup(system, queue, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    row: dict[str, Any] = {"system": system}
    for ph in ("idle", "load"):
        d = data[ph]
        row[ph] = {"start_p50_ms": pct(d["start"], 50), "start_p99_ms": pct(d["start"], 99),
                   "result_p50_ms": pct(d["result"], 50), "result_p99_ms": pct(d["result"], 99),
                   "n": len(d["start"]), "lost": d["lost"]}
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--role", choices=["worker", "probe", "load"])
    ap.add_argument("--system")
    ap.add_argument("--systems", default=",".join(ALL))
    ap.add_argument("--probes", type=int, default=200)
    ap.add_argument("--load-rate", type=float, default=100.0)
    ap.add_argument("--out")
    ap.add_argument("--json", help="write the rows to this file")
    a = ap.parse_args()
    if a.role == "worker":
        role_worker(a.system)
        return 0
    if a.role == "load":
        role_load(a.system, a.load_rate)
        return 0
    if a.role == "probe":
        role_probe(a.system, a.probes, a.load_rate, a.out)
        return 0
    rows = []
    for system in a.systems.split(","):
        print(f"--- {system}", flush=True)
        try:
            rows.append(run_system(system, a.probes, a.load_rate))
        except Exception as exc:
            print(f"  skipped: {exc}", flush=True)
            rows.append({"system": system, "error": str(exc)[-500:]})
    print(f"\n{'system':20} {'phase':5} {'start p50':>10} {'start p99':>10} {'result p50':>11} {'result p99':>11}"
          f" {'n':>5} {'lost':>5}   (ms)")
    for r in rows:
        if "error" in r:
            print(f"{r['system']:20} skipped")
            continue
        for ph in ("idle", "load"):
            d = r[ph]
            print(f"{r['system']:20} {ph:5} {d['start_p50_ms']:10.2f} {d['start_p99_ms']:10.2f} "
                  f"{d['result_p50_ms']:11.2f} {d['result_p99_ms']:11.2f} {d['n']:5} {d['lost']:5}")
    ok = True
    for r in rows:
        if r.get("system") == "bk-redis" and "idle" in r:
            d = r["idle"]
            ok = d["start_p50_ms"] <= 1.0 and d["start_p99_ms"] <= 5.0
            print(f"\ntarget bk-redis idle push-to-start p50 <= 1 ms, p99 <= 5 ms: "
                  f"{d['start_p50_ms']:.2f} / {d['start_p99_ms']:.2f} ms -> {'PASS' if ok else 'FAIL'}")
    if a.json:
        Path(a.json).write_text(json.dumps({"load_rate": a.load_rate, "probes": a.probes, "rows": rows,
                                            "load_average": os.getloadavg()}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
