"""PgQueuer and procrastinate on PostgreSQL, measured the way ``benchmarks/bench_postgres.py`` measures us.

    uv sync --all-packages --inexact     # the `bench` dependency group brings pgqueuer and procrastinate
    uv run python benchmarks/peers/pg_peers.py -n 10000 --url postgresql://postgres@127.0.0.1:5432/test

Each peer runs in a scratch database of its own (created from ``--url``'s server, dropped at the end), so
neither installs its tables into a database anyone uses. The measurement is in-process, like ours:

* *publish one by one*: ``n_single`` enqueue calls, each its own statement and round trip;
* *publish batched*: the peer's multi-row call (PgQueuer's list ``enqueue``, procrastinate's
  ``batch_defer``) with 5,000 jobs per call;
* *consume*: one worker in this process from start until the last of the ``n`` no-op jobs has finished
  and been recorded as done (the same at-least-once guarantee as ours: a job is claimed, run, then
  marked done; a worker that dies leaves it to be picked up again). ``concurrency`` is the number of jobs
  in flight: PgQueuer's ``max_concurrent_tasks`` (async tasks), procrastinate's ``concurrency``.

Each function returns ``{"publish_one_per_s", "publish_batch_per_s", "consume_per_s"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

BATCH = 5000


@contextlib.contextmanager
def scratch_database(url: str) -> Iterator[str]:
    """A new empty database on the server of ``url`` for the duration of the block; its URL."""
    import psycopg

    name = f"bk_peer_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(url)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(url, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_pgqueuer(url: str, n: int, concurrency: int, n_single: int) -> dict[str, float]:
    return asyncio.run(_pgqueuer(url, n, concurrency, n_single))


async def _pgqueuer(url: str, n: int, concurrency: int, n_single: int) -> dict[str, float]:
    import psycopg
    from pgqueuer import PsycopgDriver, Queries

    with scratch_database(url) as db:
        conn = await psycopg.AsyncConnection.connect(db, autocommit=True)
        queries = Queries(PsycopgDriver(conn))
        await queries.install()

        t0 = time.perf_counter()
        for i in range(n_single):
            await queries.enqueue("noop", str(i).encode())
        one = n_single / (time.perf_counter() - t0)

        # Drain what the one-by-one loop queued, so the consume figure below counts the n batched jobs only.
        await _pgqueuer_consume(db, n_single, concurrency)

        t0 = time.perf_counter()
        for start in range(0, n, BATCH):
            size = min(BATCH, n - start)
            await queries.enqueue(["noop"] * size, [str(i).encode() for i in range(start, start + size)], [0] * size)
        batch = n / (time.perf_counter() - t0)

        t0 = time.perf_counter()
        await _pgqueuer_consume(db, n, concurrency)
        consume = n / (time.perf_counter() - t0)
        await conn.close()
    return {"publish_one_per_s": one, "publish_batch_per_s": batch, "consume_per_s": consume}


async def _pgqueuer_consume(db: str, n: int, concurrency: int) -> None:
    import psycopg
    from pgqueuer import Job, PsycopgDriver, Queries, QueueManager
    from pgqueuer.types import QueueExecutionMode

    conn = await psycopg.AsyncConnection.connect(db, autocommit=True)
    qm = QueueManager(Queries(PsycopgDriver(conn)))
    done = [0]

    @qm.entrypoint("noop")
    async def noop(job: Job) -> None:
        done[0] += 1

    # drain: the manager returns once the queue is empty and its tasks have finished.
    batch = max(1, concurrency // 2)  # PgQueuer wants max_concurrent_tasks >= 2 x batch_size
    await qm.run(dequeue_timeout=timedelta(seconds=1), batch_size=batch,
                 mode=QueueExecutionMode.drain, max_concurrent_tasks=max(2 * batch, concurrency))
    await conn.close()
    if done[0] < n:
        raise RuntimeError(f"pgqueuer ran {done[0]} of {n} jobs")


def run_procrastinate(url: str, n: int, concurrency: int, n_single: int) -> dict[str, float]:
    import procrastinate

    with scratch_database(url) as db:
        app = procrastinate.App(connector=procrastinate.SyncPsycopgConnector(conninfo=db))
        done = [0]

        @app.task(queue="bench", name="noop")
        async def noop(x: int) -> None:  # async: procrastinate runs ``concurrency`` of these at once
            done[0] += 1

        with app.open():
            app.schema_manager.apply_schema()
            t0 = time.perf_counter()
            for i in range(n_single):
                noop.defer(x=i)
            one = n_single / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            for start in range(0, n, BATCH):
                noop.batch_defer(*({"x": i} for i in range(start, min(n, start + BATCH))))
            batch = n / (time.perf_counter() - t0)

        # The worker needs the asynchronous connector: a second App on the same database.
        worker_app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=db))
        worker_app.task(queue="bench", name="noop")(noop.func)
        t0 = time.perf_counter()
        worker_app.run_worker(queues=["bench"], concurrency=concurrency, wait=False, install_signal_handlers=False)
        consume = (n + n_single) / (time.perf_counter() - t0)
        if done[0] < n + n_single:
            raise RuntimeError(f"procrastinate ran {done[0]} of {n + n_single} jobs")
    return {"publish_one_per_s": one, "publish_batch_per_s": batch, "consume_per_s": consume}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    a = ap.parse_args()
    n_single = min(a.n, 5000)
    for name, fn in (("pgqueuer", run_pgqueuer), ("procrastinate", run_procrastinate)):
        print(json.dumps({"peer": name, **fn(a.url, a.n, a.concurrency, n_single)}), flush=True)


if __name__ == "__main__":
    main()
