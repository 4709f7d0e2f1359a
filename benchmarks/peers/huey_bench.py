"""Huey peer benchmark: enqueue / execute no-op tasks on Redis.

    python benchmarks/peers/huey_bench.py --broker-url redis://127.0.0.1:6379/14 -n 10000 --json

Mode: huey has NO acknowledgement: the consumer pops the message (BRPOP, ``RedisHuey(blocking=True)``, the
default) before running it, so a task in flight or prefetched is lost if the consumer is killed
(at-most-once; huey docs: "does not guarantee at-least-once"). Not the same guarantee as
boostkernel/celery acks_late/dramatiq: compare it only as a fire-and-forget reference.
``results=False`` (no result store), no retries. Worker: ``huey_consumer`` with its defaults
(``-k thread -w 1``: one worker thread; ``--concurrency K`` sets ``-w K``), ``--quiet`` logging.
Importable: ``run(broker_url, n, concurrency) -> dict``.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peerbench_common as common  # noqa: E402

FRAMEWORK = "huey"
QUEUE_PREFIX = "peerbench_huey"  # + a random suffix per run (the RedisHuey name)


def make_huey(broker_url: str, queue: str) -> tuple[Any, Any]:
    from huey import RedisHuey

    huey = RedisHuey(queue, url=broker_url, results=False, blocking=True)

    def noop() -> None:
        common.count_done()

    # huey registers tasks as "<module>.<name>": pin the module so that the publisher (maybe __main__ or
    # another importer) and the consumer (which imports huey_bench) agree on the name
    noop.__module__ = "huey_bench"
    return huey, huey.task(name="peerbench_noop")(noop)


# the consumer process imports this module (huey_consumer huey_bench.huey) with the URL in the environment
if os.environ.get(common.BROKER_URL_ENV):
    huey, noop_task = make_huey(os.environ[common.BROKER_URL_ENV], os.environ.get(common.QUEUE_ENV, QUEUE_PREFIX))


def _cleanup(broker_url: str, queue: str) -> None:
    # RedisStorage keys: huey.redis.<name> (queue), huey.schedule.<name>, huey.results.<name>
    common.redis_delete_patterns(broker_url, [f"huey.*{queue}*"])


def run(broker_url: str, n: int, concurrency: int | None = None, *, timeout: float = 110.0) -> dict[str, Any]:
    import huey as huey_pkg

    if common.broker_kind(broker_url) != "redis":
        raise SystemExit("this benchmark runs huey on Redis only (RedisHuey)")
    workers = concurrency or 1
    queue = common.run_queue(QUEUE_PREFIX)
    counter_key = common.counter_key_for(queue)
    common.reset_counter(counter_key)
    try:
        pub_huey, task = make_huey(broker_url, queue)
        pub_huey.storage.conn.ping()  # connect before the clock starts
        publish_s = common.time_publish(n, lambda i: task())

        worker = common.Worker(
            cmd=[
                sys.executable,
                "-m",
                "huey.bin.huey_consumer",
                "huey_bench.huey",
                "-k",
                "thread",
                "-w",
                str(workers),
                "--quiet",
            ],
            env=common.worker_env(broker_url, counter_key, queue=queue),
            stop_signal=signal.SIGINT,  # huey: SIGINT = graceful shutdown, SIGTERM = immediate
        )
        mode = (
            "NO ack: message popped (BRPOP) before execution -> at-most-once, lost on kill; results=False; "
            f"1 huey_consumer process, thread workers x {workers}" + (" (default -w 1)" if concurrency is None else "")
        )
        return common.measure(
            framework=FRAMEWORK,
            version=huey_pkg.__version__,
            broker_url=broker_url,
            n=n,
            concurrency=workers,
            mode=mode,
            counter_key=counter_key,
            publish_seconds=publish_s,
            worker=worker,
            timeout=timeout,
            extra={"worker_type": "thread", "at_most_once": True, "queue": queue},
        )
    finally:
        _cleanup(broker_url, queue)
        common.reset_counter(counter_key)


if __name__ == "__main__":
    sys.exit(common.main_for(run, "Huey no-op enqueue/execute benchmark (at-most-once)", "1 thread (huey default)"))
