"""Celery peer benchmark: publish / consume no-op tasks with ack-after-execution (acks_late).

    python benchmarks/peers/celery_bench.py --broker-url redis://127.0.0.1:6379/14 -n 10000 --json
    python benchmarks/peers/celery_bench.py --broker-url amqp://guest:guest@127.0.0.1:5672// -n 10000 --json

Mode: ``task_acks_late=True`` (ack after the task ran), ``worker_prefetch_multiplier=1``, no result backend
(``task_ignore_result=True``), JSON serializer. Worker: ``celery worker`` with its default pool (prefork) and
default concurrency (number of CPUs), ``--loglevel WARNING`` (no per-task log lines),
``--without-gossip --without-mingle --without-heartbeat`` (no chatter with other workers on the same broker).
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

FRAMEWORK = "celery"
QUEUE_PREFIX = "peerbench_celery"  # + a random suffix per run
TASK_NAME = "peerbench.celery.noop"


def make_app(broker_url: str, queue: str) -> Any:
    from celery import Celery

    app = Celery("peerbench_celery", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=queue,
        task_default_exchange=queue,
        task_default_routing_key=queue,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        worker_enable_remote_control=False,
        worker_send_task_events=False,
    )

    @app.task(name=TASK_NAME, acks_late=True, ignore_result=True, shared=False)
    def noop() -> None:
        common.count_done()

    return app


# the worker process imports this module (celery -A celery_bench:app) with the URL in the environment
app = make_app(
    os.environ.get(common.BROKER_URL_ENV, common.DEFAULT_REDIS_URL), os.environ.get(common.QUEUE_ENV, QUEUE_PREFIX)
)


def _cleanup(broker_url: str, queue: str) -> None:
    # kombu's shared "unacked" hashes are left alone: after a complete run our entries are acked (gone)
    if common.broker_kind(broker_url) == "redis":
        common.redis_delete_patterns(broker_url, [f"_kombu.binding*{queue}*", f"{queue}*"], keys=[queue])
    else:
        common.rabbitmq_delete(broker_url, queues=[queue], exchanges=[queue])


def run(broker_url: str, n: int, concurrency: int | None = None, *, timeout: float = 110.0) -> dict[str, Any]:
    import celery

    conc = concurrency or (os.cpu_count() or 1)
    queue = common.run_queue(QUEUE_PREFIX)
    counter_key = common.counter_key_for(queue)
    common.reset_counter(counter_key)
    try:
        pub_app = make_app(broker_url, queue)
        task = pub_app.tasks[TASK_NAME]
        try:
            with pub_app.producer_or_acquire() as producer:
                # declare the queue first so messages published before the worker starts are kept (amqp)
                pub_app.amqp.queues[queue].declare(channel=producer.channel)
                publish_s = common.time_publish(n, lambda i: task.apply_async(producer=producer))
        finally:
            pub_app.close()

        worker = common.Worker(
            cmd=[
                sys.executable,
                "-m",
                "celery",
                "-A",
                "celery_bench:app",
                "worker",
                "--pool",
                "prefork",
                "--concurrency",
                str(conc),
                "--queues",
                queue,
                "--loglevel",
                "WARNING",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            env=common.worker_env(broker_url, counter_key, queue=queue),
            stop_signal=signal.SIGTERM,  # warm shutdown
        )
        mode = (
            f"acks_late=True, worker_prefetch_multiplier=1, no result backend, json; "
            f"1 worker process, prefork pool x {conc} ({'default = CPU count' if concurrency is None else 'set'})"
        )
        return common.measure(
            framework=FRAMEWORK,
            version=celery.__version__,
            broker_url=broker_url,
            n=n,
            concurrency=conc,
            mode=mode,
            counter_key=counter_key,
            publish_seconds=publish_s,
            worker=worker,
            timeout=timeout,
            extra={"pool": "prefork", "queue": queue},
        )
    finally:
        _cleanup(broker_url, queue)
        common.reset_counter(counter_key)


if __name__ == "__main__":
    sys.exit(common.main_for(run, "Celery no-op publish/consume benchmark (acks_late)", "CPU count, prefork"))
