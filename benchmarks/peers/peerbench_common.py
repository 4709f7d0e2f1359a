"""Shared helpers for the peer-framework benchmark scripts in this folder.

Every ``<name>_bench.py`` script measures one other Python task framework the same way:

1. purge the framework's queue and the completion counter;
2. publish ``n`` no-op tasks from this process in a plain loop (timed -> ``publish_per_s``);
3. start ONE worker process of the framework (its CLI, default/typical concurrency);
4. every task does one Redis round trip on a *separate* counter connection (a MULTI/EXEC pipeline:
   ``SADD done <token>``, ``SETNX first <now>``, ``SET last <now>``), so the harness knows exactly when the first
   and the last task finished; ``consume_per_s = (n - 1) / (last - first)`` (steady state, worker start-up
   excluded; the start-up-inclusive figure is reported too as ``consume_wall_per_s``);
5. stop the worker with its graceful-shutdown signal, then delete the queues and counter keys.

The counter always lives in Redis (``PEERBENCH_COUNTER_URL``, default ``redis://127.0.0.1:6379/14``), also
when the broker is RabbitMQ.

Two counting methods (``PEERBENCH_COUNT``), the same for every framework in one run:

* ``batched`` (default): a task records its completion (token and timestamp) in process memory; a
  background thread in each worker process sends what accumulated every 5 ms in one round trip (and at
  exit). The first/last timestamps are the tasks' own, so the rate is exact; per task the method costs a
  few microseconds, so the figures show the frameworks' own costs.
* ``roundtrip``: every task does the MULTI/EXEC round trip of step 4 itself. This caps every framework at
  the rate of that round trip (about 4,000-8,000/s from 50 threads here), whatever the framework.

Nothing here imports a task framework; only ``redis`` (and ``pika`` for RabbitMQ clean-up).
"""

from __future__ import annotations

import argparse
import atexit
import datetime as _dt
import itertools
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

PEERS_DIR = Path(__file__).resolve().parent
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
COUNTER_URL_ENV = "PEERBENCH_COUNTER_URL"
BROKER_URL_ENV = "PEERBENCH_BROKER_URL"
COUNTER_KEY_ENV = "PEERBENCH_COUNTER_KEY"
QUEUE_ENV = "PEERBENCH_QUEUE"


def run_queue(prefix: str) -> str:
    """A queue name unique to one run, so two runs (or another helper calling ``run()``) never share a queue."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def counter_key_for(queue: str) -> str:
    return f"peerbench:{queue}:done"


def mask_url(url: str) -> str:
    """Hide the password of a broker URL (for logs and JSON output)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def broker_kind(url: str) -> str:
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("redis", "rediss", "unix"):
        return "redis"
    if scheme in ("amqp", "amqps", "pyamqp"):
        return "rabbitmq"
    raise SystemExit(f"unsupported broker URL scheme {scheme!r} in {mask_url(url)}: use redis:// or amqp://")


def counter_url() -> str:
    return os.environ.get(COUNTER_URL_ENV, DEFAULT_REDIS_URL)


# ---------------------------------------------------------------- in-task counter (runs inside the workers)

_counter_client: Any = None
_counter_pid: int | None = None


def _counter() -> Any:
    global _counter_client, _counter_pid
    if _counter_client is None or _counter_pid != os.getpid():
        import redis

        _counter_client = redis.Redis.from_url(counter_url())
        _counter_pid = os.getpid()
    return _counter_client


COUNT_METHOD_ENV = "PEERBENCH_COUNT"
FLUSH_INTERVAL = 0.005
_batch_lock = threading.Lock()
_batch: list[bytes] = []
_batch_times: list[float] = []  # [first, last] of the completions waiting in _batch
_flusher_pid: int | None = None
# first/last are the minimum/maximum over every process that flushes (celery prefork has several)
_MINMAX = """
local f = redis.call('GET', KEYS[1])
if (not f) or tonumber(ARGV[1]) < tonumber(f) then redis.call('SET', KEYS[1], ARGV[1]) end
local l = redis.call('GET', KEYS[2])
if (not l) or tonumber(ARGV[2]) > tonumber(l) then redis.call('SET', KEYS[2], ARGV[2]) end
return 1
"""


_token_seq = itertools.count()
_token_pid: int | None = None
_token_pre = b""


def _token_prefix() -> bytes:
    global _token_pid, _token_pre
    if _token_pid != os.getpid():
        _token_pid, _token_pre = os.getpid(), os.urandom(8)
    return _token_pre


def count_method() -> str:
    method = os.environ.get(COUNT_METHOD_ENV, "batched")
    if method not in ("batched", "roundtrip"):
        raise SystemExit(f"{COUNT_METHOD_ENV}={method!r}: use 'batched' or 'roundtrip'")
    return method


def count_done() -> None:
    """Called once by every benchmark task (see the module docstring for the two methods)."""
    if count_method() == "batched":
        _count_batched()
    else:
        _count_roundtrip()


def _count_batched() -> None:
    global _flusher_pid
    now = time.time()
    # a token unique across processes without a syscall: os.urandom would release the GIL on every task,
    # and under 50 threads each release is a GIL hand-off that costs more than the task itself
    token = _token_prefix() + next(_token_seq).to_bytes(8, "big")
    with _batch_lock:
        _batch.append(token)
        if _batch_times:
            _batch_times[1] = now
        else:
            _batch_times.extend((now, now))
    if _flusher_pid != os.getpid():  # first task of this process (also after a fork: prefork pools)
        with _batch_lock:
            if _flusher_pid != os.getpid():
                _flusher_pid = os.getpid()
                threading.Thread(target=_flush_loop, name="peerbench-flush", daemon=True).start()
                atexit.register(_flush)


def _flush_loop() -> None:
    while True:
        time.sleep(FLUSH_INTERVAL)
        _flush()


def _flush() -> None:
    with _batch_lock:
        if not _batch:
            return
        tokens, times = _batch[:], _batch_times[:]
        _batch.clear()
        _batch_times.clear()
    key = os.environ.get(COUNTER_KEY_ENV, "peerbench:done")

    def fill(pipe: Any) -> None:
        pipe.sadd(key, *tokens)
        pipe.eval(_MINMAX, 2, key + ":first", key + ":last", repr(times[0]), repr(times[1]))

    _execute_with_retries(fill)


def _execute_with_retries(fill: Callable[[Any], None]) -> None:
    """Run one MULTI/EXEC pipeline filled by ``fill``, reconnecting after connection errors (the tokens in
    a set make a repeated pipeline count nothing twice)."""
    global _counter_client
    import redis

    for attempt in range(8):
        pipe = _counter().pipeline(transaction=True)
        fill(pipe)
        try:
            pipe.execute()
            return
        except (redis.ConnectionError, redis.TimeoutError):
            if attempt == 7:
                raise
            _counter_client = None
            time.sleep(0.05 * (attempt + 1))


def _count_roundtrip() -> None:
    """One Redis round trip per task (MULTI/EXEC pipeline).

    The completion is recorded as a random token added to a set (SADD), so retrying after a connection
    error or a read timeout (the Redis here is shared with other suites, some of which kill or pause
    clients) never counts one execution twice.
    """
    key = os.environ.get(COUNTER_KEY_ENV, "peerbench:done")
    token = uuid.uuid4().bytes

    def fill(pipe: Any) -> None:
        now = repr(time.time())
        pipe.sadd(key, token)
        pipe.setnx(key + ":first", now)
        pipe.set(key + ":last", now)

    _execute_with_retries(fill)


# ---------------------------------------------------------------- harness side


@dataclass
class Worker:
    """One worker process started by the harness (its own process group, output to a temp log)."""

    cmd: Sequence[str]
    env: dict[str, str]
    cwd: str | None = None
    stop_signal: int = signal.SIGTERM
    self_exit_grace: float = 0.0  # rq --burst: give it this long to exit on its own before signalling
    proc: subprocess.Popen[bytes] | None = None
    log_path: str = ""
    started_at: float = 0.0
    stopped: str = "not started"
    _log: Any = field(default=None, repr=False)

    def start(self) -> None:
        fd, self.log_path = tempfile.mkstemp(prefix="peerbench-worker-", suffix=".log")
        self._log = os.fdopen(fd, "wb")
        self.started_at = time.time()
        self.proc = subprocess.Popen(
            list(self.cmd),
            env=self.env,
            cwd=self.cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 20.0) -> str:
        """Graceful stop with the framework's shutdown signal; SIGKILL our own process group after ``grace``."""
        if self.proc is None:
            return self.stopped
        if self.self_exit_grace and self.proc.poll() is None:
            try:
                self.proc.wait(self.self_exit_grace)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is not None:
            self.stopped = f"exited by itself (rc={self.proc.returncode})"
        else:
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(grace)
                self.stopped = f"stopped by {signal.Signals(self.stop_signal).name} (rc={self.proc.returncode})"
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(10)
                self.stopped = f"killed after {grace:.0f}s ({signal.Signals(self.stop_signal).name} ignored)"
        # children of the worker (prefork pools, dramatiq's worker process) share its process group
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            pass
        else:
            time.sleep(0.5)
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.stopped += "; leftover children killed"
            except ProcessLookupError:
                pass
        if self._log is not None:
            self._log.close()
        return self.stopped

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def remove_log(self) -> None:
        if self.log_path:
            try:
                os.unlink(self.log_path)
            except OSError:
                pass


def worker_env(
    broker_url: str, counter_key: str, extra_path: Sequence[str] = (), queue: str | None = None
) -> dict[str, str]:
    env = dict(os.environ)
    paths = [*extra_path, str(PEERS_DIR)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env[BROKER_URL_ENV] = broker_url
    env[COUNTER_KEY_ENV] = counter_key
    if queue is not None:
        env[QUEUE_ENV] = queue
    env.setdefault(COUNTER_URL_ENV, DEFAULT_REDIS_URL)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def reset_counter(key: str) -> None:
    r = _counter()
    r.delete(key, key + ":first", key + ":last")


def read_counter(key: str) -> tuple[int, float | None, float | None]:
    global _counter_client
    import redis

    for attempt in range(8):
        pipe = _counter().pipeline(transaction=False)
        pipe.scard(key)
        pipe.mget(key + ":first", key + ":last")
        try:
            done, (first, last) = pipe.execute()
            break
        except (redis.ConnectionError, redis.TimeoutError):
            if attempt == 7:
                raise
            _counter_client = None
            time.sleep(0.05 * (attempt + 1))
    return (
        int(done or 0),
        float(first) if first is not None else None,
        float(last) if last is not None else None,
    )


def wait_for_done(key: str, n: int, worker: Worker, timeout: float, poll: float = 0.02) -> tuple[int, float]:
    """Poll the counter until ``n`` tasks finished, the worker died or ``timeout`` passed."""
    deadline = time.time() + timeout
    done = 0
    while time.time() < deadline:
        done = read_counter(key)[0]
        if done >= n:
            return done, time.time()
        if not worker.alive():
            # rq --burst exits by itself once the queue is empty: re-read once more
            done = read_counter(key)[0]
            return done, time.time()
        time.sleep(poll)
    return read_counter(key)[0], time.time()


def time_publish(n: int, publish_one: Callable[[int], Any], flush: Callable[[], Any] | None = None) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        publish_one(i)
    if flush is not None:
        flush()
    return time.perf_counter() - t0


def measure(
    *,
    framework: str,
    version: str,
    broker_url: str,
    n: int,
    concurrency: int,
    mode: str,
    counter_key: str,
    publish_seconds: float,
    worker: Worker,
    timeout: float,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Start ``worker``, wait for ``n`` completions, stop it, and build the result dict."""
    load_before = os.getloadavg()[0]
    worker.start()
    try:
        done, t_end = wait_for_done(counter_key, n, worker, timeout)
    finally:
        stopped = worker.stop()
    done, first, last = read_counter(counter_key)
    ok = done >= n
    if not ok:
        sys.stderr.write(
            f"[{framework}/{broker_kind(broker_url)}] only {done}/{n} tasks completed "
            f"(worker {stopped}); worker log tail:\n{worker.log_tail()}\n"
        )
    else:
        worker.remove_log()
    steady = (last - first) if (first is not None and last is not None) else None
    consume_per_s = ((done - 1) / steady) if steady and done > 1 else 0.0
    wall = (last if last is not None else t_end) - worker.started_at
    result: dict[str, Any] = {
        "framework": framework,
        "broker": broker_kind(broker_url),
        "mode": mode,
        "n": n,
        "publish_per_s": round(n / publish_seconds, 1) if publish_seconds > 0 else 0.0,
        "consume_per_s": round(consume_per_s, 1),
        "concurrency": concurrency,
        "version": version,
        # extra detail (same for every script)
        "completed": done,
        "ok": ok,
        "publish_s": round(publish_seconds, 3),
        "consume_s": round(steady, 3) if steady else None,
        "consume_wall_per_s": round(done / wall, 1) if wall > 0 else 0.0,
        "worker_startup_s": round(first - worker.started_at, 3) if first is not None else None,
        "worker_stop": stopped,
        "broker_url": mask_url(broker_url),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        # this machine is shared: the 1-minute load average before/after the consume phase says how busy it was
        "loadavg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if not ok:
        result["worker_log_path"] = worker.log_path
    if extra:
        result.update(extra)
    return result


# ---------------------------------------------------------------- broker clean-up helpers


def redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


def redis_delete_patterns(url: str, patterns: Sequence[str], keys: Sequence[str] = ()) -> int:
    """Delete explicit ``keys`` and every key matching one of ``patterns`` (SCAN, never KEYS/FLUSHDB)."""
    r = redis_client(url)
    deleted = 0
    batch = list(keys)
    for pattern in patterns:
        for key in r.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += r.delete(*batch)
                batch = []
    if batch:
        deleted += r.delete(*batch)
    r.close()
    return deleted


def _pika_params(url: str) -> Any:
    import pika

    parts = urlsplit(url)
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return pika.ConnectionParameters(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5672,
        virtual_host=vhost or "/",
        credentials=pika.PlainCredentials(unquote(parts.username or "guest"), unquote(parts.password or "guest")),
        connection_attempts=2,
        retry_delay=0.5,
    )


def pika_style_url(url: str) -> str:
    """kombu spells the default vhost ``//`` (path ``/`` + vhost ``/``); pika/amqpstorm want ``/%2F``."""
    parts = urlsplit(url)
    if parts.path == "//":
        return parts._replace(path="/%2F").geturl()
    return url


def rabbitmq_delete(url: str, queues: Sequence[str] = (), exchanges: Sequence[str] = ()) -> None:
    """Delete queues/exchanges (missing ones are fine: each delete runs on a fresh channel)."""
    import pika

    conn = pika.BlockingConnection(_pika_params(url))
    try:
        for q in queues:
            ch = conn.channel()
            try:
                ch.queue_delete(queue=q)
                ch.close()
            except pika.exceptions.ChannelClosedByBroker:
                pass
        for ex in exchanges:
            ch = conn.channel()
            try:
                ch.exchange_delete(exchange=ex)
                ch.close()
            except pika.exceptions.ChannelClosedByBroker:
                pass
    finally:
        conn.close()


def rabbitmq_queue_depth(url: str, queue: str) -> int | None:
    import pika

    conn = pika.BlockingConnection(_pika_params(url))
    try:
        ch = conn.channel()
        try:
            return int(ch.queue_declare(queue=queue, passive=True).method.message_count)
        except pika.exceptions.ChannelClosedByBroker:
            return None
    finally:
        conn.close()


# ---------------------------------------------------------------- CLI


def parse_args(
    description: str, default_concurrency_help: str, argv: Sequence[str] | None = None
) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--broker-url", default=DEFAULT_REDIS_URL, help=f"broker URL (default {DEFAULT_REDIS_URL})")
    p.add_argument("-n", type=int, default=10_000, help="number of no-op tasks (default 10000)")
    p.add_argument(
        "--concurrency", type=int, default=None, help=f"worker concurrency (default: {default_concurrency_help})"
    )
    p.add_argument("--timeout", type=float, default=110.0, help="max seconds to wait for the worker (default 110)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    args = p.parse_args(argv)
    if args.n < 2:
        p.error("-n must be at least 2")
    return args


def emit(result: dict[str, Any], as_json: bool) -> None:
    sys.stdout.flush()
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        sys.stdout.write(
            f"{result['framework']} {result['version']} on {result['broker']} ({result['mode']}), "
            f"n={result['n']} concurrency={result['concurrency']}: publish {result['publish_per_s']:,.0f}/s, "
            f"consume {result['consume_per_s']:,.0f}/s (with start-up {result['consume_wall_per_s']:,.0f}/s), "
            f"completed {result['completed']}/{result['n']}, worker stop: {result['worker_stop']}\n"
        )
    sys.stdout.flush()


def main_for(run: Callable[..., dict[str, Any]], description: str, default_concurrency_help: str) -> int:
    args = parse_args(description, default_concurrency_help)
    result = run(args.broker_url, args.n, args.concurrency, timeout=args.timeout)
    emit(result, args.json)
    return 0 if result.get("ok") else 1
