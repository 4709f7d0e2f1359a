"""RQ peer benchmark: enqueue / execute no-op jobs on Redis (RQ supports Redis/Valkey only).

    python benchmarks/peers/rq_bench.py --broker-url redis://127.0.0.1:6379/14 -n 10000 --json
    python benchmarks/peers/rq_bench.py --broker-url redis://127.0.0.1:6379/14 -n 2000 --worker-class default --json

Mode: RQ's only delivery mode — the job is moved (LMOVE) to an intermediate list and tracked in the
StartedJobRegistry while it runs and removed from it when it finishes; a job whose worker died is found by
the maintenance pass and moved to the FailedJobRegistry (re-run only if the job has a ``Retry``). Default
(pickle) serializer, default ``result_ttl`` (500 s), no ``Retry``.
Worker: one ``rq worker --burst`` process, one job at a time (RQ has no in-process concurrency).
``--worker-class simple`` (the default HERE) uses ``rq.SimpleWorker`` (runs the job in the worker process),
which RQ's docs/benchmark.md recommends for short jobs; ``--worker-class default`` uses RQ's default
``rq.Worker``, which forks a work horse per job (~30-150 jobs/s, so use -n 2000 or less to finish in time).
``--concurrency K`` (K > 1) runs ``rq worker-pool -n K`` instead (K worker processes).
Importable: ``run(broker_url, n, concurrency, worker_class="simple"|"default") -> dict``.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peerbench_common as common  # noqa: E402

FRAMEWORK = "rq"
QUEUE_PREFIX = "peerbench_rq"  # + a random suffix per run
WORKER_CLASSES = {"default": "rq.Worker", "simple": "rq.SimpleWorker"}


def noop() -> None:
    common.count_done()


def _cleanup(broker_url: str, queue: str, job_ids: list[str]) -> None:
    keys = [f"rq:job:{j}" for j in job_ids] + [f"rq:results:{j}" for j in job_ids]
    common.redis_delete_patterns(broker_url, [f"rq:*{queue}*"], keys=keys)


def run(
    broker_url: str,
    n: int,
    concurrency: int | None = None,
    *,
    timeout: float = 110.0,
    worker_class: str = "simple",
) -> dict[str, Any]:
    import rq
    from rq import Queue

    if common.broker_kind(broker_url) != "redis":
        raise SystemExit("rq supports Redis only")
    if worker_class not in WORKER_CLASSES:
        raise SystemExit(f"worker_class must be one of {sorted(WORKER_CLASSES)}")
    conc = concurrency or 1
    queue_name = common.run_queue(QUEUE_PREFIX)
    counter_key = common.counter_key_for(queue_name)
    common.reset_counter(counter_key)
    conn = common.redis_client(broker_url)
    queue = Queue(queue_name, connection=conn)
    job_ids: list[str] = []
    try:
        conn.ping()  # connect before the clock starts
        # enqueue by dotted name: the worker imports rq_bench from PYTHONPATH (benchmarks/peers)
        publish_s = common.time_publish(n, lambda i: job_ids.append(queue.enqueue("rq_bench.noop").id))

        wc = WORKER_CLASSES[worker_class]
        if conc == 1:
            cmd = [
                sys.executable,
                "-m",
                "rq.cli",
                "worker",
                "--burst",
                "--url",
                broker_url,
                "--logging_level",
                "WARNING",
                "--worker-class",
                wc,
                queue_name,
            ]
            shape = "1 worker process"
        else:
            cmd = [
                sys.executable,
                "-m",
                "rq.cli",
                "worker-pool",
                "--burst",
                "--url",
                broker_url,
                "--logging-level",
                "WARNING",
                "--worker-class",
                wc,
                "-n",
                str(conc),
                queue_name,
            ]
            shape = f"rq worker-pool with {conc} worker processes"
        worker = common.Worker(
            cmd=cmd,
            env=common.worker_env(broker_url, counter_key, queue=queue_name),
            stop_signal=signal.SIGTERM,  # warm shutdown (burst mode normally exits by itself first)
            self_exit_grace=10.0,
        )
        forking = "fork per job (rq default)" if worker_class == "default" else "no fork (SimpleWorker)"
        mode = (
            f"StartedJobRegistry until done, abandoned -> FailedJobRegistry (no auto re-run), pickle, "
            f"result_ttl 500 s; {shape}, {wc} {forking}, 1 job at a time per worker, --burst"
        )
        return common.measure(
            framework=FRAMEWORK,
            version=rq.__version__,
            broker_url=broker_url,
            n=n,
            concurrency=conc,
            mode=mode,
            counter_key=counter_key,
            publish_seconds=publish_s,
            worker=worker,
            timeout=timeout,
            extra={"worker_class": wc, "variant": "rq" if worker_class == "simple" else "rq-fork", "queue": queue_name},
        )
    finally:
        queue.delete(delete_jobs=True)
        _cleanup(broker_url, queue_name, job_ids)
        common.reset_counter(counter_key)
        conn.close()


def _main() -> int:
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--worker-class", choices=sorted(WORKER_CLASSES), default="simple")
    known, rest = extra.parse_known_args()
    args = common.parse_args(
        "RQ no-op enqueue/execute benchmark (--worker-class simple|default)", "1 (one rq worker)", rest
    )
    result = run(args.broker_url, args.n, args.concurrency, timeout=args.timeout, worker_class=known.worker_class)
    common.emit(result, args.json)
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(_main())
