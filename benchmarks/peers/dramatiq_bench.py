"""Dramatiq peer benchmark: publish / consume no-op actors (Redis or RabbitMQ broker).

    python benchmarks/peers/dramatiq_bench.py --broker-url redis://127.0.0.1:6379/14 -n 10000 --json
    python benchmarks/peers/dramatiq_bench.py --broker-url amqp://guest:guest@127.0.0.1:5672// -n 10000 --json

Mode: dramatiq's only mode — the message is acked after the actor ran (Redis: per-worker ack set +
heartbeat requeue; RabbitMQ: basic_ack after processing). Default middleware, ``max_retries=0``, no result
backend, RabbitMQ ``confirm_delivery=False`` (the default). Worker: ``dramatiq`` CLI with ``--processes 1`` and
the default ``--threads 8``. Importable: ``run(broker_url, n, concurrency) -> dict``.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peerbench_common as common  # noqa: E402

FRAMEWORK = "dramatiq"
QUEUE_PREFIX = "peerbench_dramatiq"  # + a random suffix per run; also the Redis key namespace of the run


def make_broker(broker_url: str, queue: str) -> tuple[Any, Any]:
    """Return (broker, actor). The actor is bound to this broker only (not the global one)."""
    import dramatiq

    if common.broker_kind(broker_url) == "redis":
        from dramatiq.brokers.redis import RedisBroker

        # namespace = the run's queue name (dramatiq's default namespace is "dramatiq")
        broker = RedisBroker(url=broker_url, namespace=queue)
    else:
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        broker = RabbitmqBroker(url=common.pika_style_url(broker_url))

    def noop() -> None:
        common.count_done()

    actor = dramatiq.actor(noop, actor_name="peerbench_noop", queue_name=queue, max_retries=0, broker=broker)
    return broker, actor


# the worker process imports this module (dramatiq dramatiq_bench:broker) with the URL in the environment;
# the harness process never needs these module-level objects
if os.environ.get(common.BROKER_URL_ENV):
    broker, noop_actor = make_broker(os.environ[common.BROKER_URL_ENV], os.environ.get(common.QUEUE_ENV, QUEUE_PREFIX))


def _cleanup(broker_url: str, queue: str) -> None:
    if common.broker_kind(broker_url) == "redis":
        common.redis_delete_patterns(broker_url, [f"{queue}:*"])
    else:
        common.rabbitmq_delete(broker_url, queues=[queue, f"{queue}.DQ", f"{queue}.XQ"])


def run(broker_url: str, n: int, concurrency: int | None = None, *, timeout: float = 110.0) -> dict[str, Any]:
    import dramatiq

    kind = common.broker_kind(broker_url)
    threads = concurrency or 8
    queue = common.run_queue(QUEUE_PREFIX)
    counter_key = common.counter_key_for(queue)
    common.reset_counter(counter_key)
    try:
        pub_broker, actor = make_broker(broker_url, queue)
        # open the connection before the clock starts (the other scripts do the same)
        if kind == "redis":
            pub_broker.client.ping()
        else:
            pub_broker.connection  # noqa: B018 - property that connects
        try:
            publish_s = common.time_publish(n, lambda i: actor.send())
        finally:
            pub_broker.close()

        worker = common.Worker(
            cmd=[
                sys.executable,
                "-m",
                "dramatiq",
                "dramatiq_bench:broker",
                "--processes",
                "1",
                "--threads",
                str(threads),
                "--queues",
                queue,
            ],
            env=common.worker_env(broker_url, counter_key, queue=queue),
            stop_signal=signal.SIGTERM,  # graceful: finish in-flight messages, requeue prefetched ones
        )
        mode = (
            "ack after execution (dramatiq default; "
            + ("Redis ack set + heartbeats" if kind == "redis" else "RabbitMQ basic_ack")
            + f"), max_retries=0, default middleware, no result backend; 1 worker process x {threads} threads"
            + (" (default)" if concurrency is None else "")
        )
        return common.measure(
            framework=FRAMEWORK,
            version=dramatiq.__version__,
            broker_url=broker_url,
            n=n,
            concurrency=threads,
            mode=mode,
            counter_key=counter_key,
            publish_seconds=publish_s,
            worker=worker,
            timeout=timeout,
            extra={"processes": 1, "threads": threads, "queue": queue},
        )
    finally:
        _cleanup(broker_url, queue)
        common.reset_counter(counter_key)


if __name__ == "__main__":
    sys.exit(common.main_for(run, "Dramatiq no-op publish/consume benchmark", "1 process x 8 threads"))
