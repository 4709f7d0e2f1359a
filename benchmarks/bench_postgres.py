"""The ``postgres`` broker: publish one by one and batched, consume with ``solo`` and threads.

    uv run python benchmarks/bench_postgres.py            # -n 20000 --workers 16 --url postgresql://…

No-op tasks in a fresh schema (dropped at the end) of the database in ``--url`` (default: the local test
server). *publish/s* is the publishing loop (``push()`` per message: one INSERT + NOTIFY round trip
each; ``push_many()``: 5,000 rows per statement); *consume/s* runs from ``consume()`` until the last task
finished, acks included (the broker's guarantee: at-least-once, acked after the task).

Peers (skip them with ``--no-peers``): PgQueuer and procrastinate on the same server, in the same run, with
the same guarantee and the same in-process measurement (benchmarks/peers/pg_peers.py), at ``--workers``
jobs in flight and at one. The table ends with our consume rate against the faster peer's.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from typing import Any

from _common import booster_run, write_json


def run(url: str, schema: str, n: int, concurrency: str, workers: int, batch: bool) -> dict[str, float]:
    return booster_run(n, concurrency=concurrency, workers=workers, batch=batch, name="bench_pg", batch_size=5000,
                       broker="postgres", broker_url=url, broker_options={"schema": schema})


def peers(a: argparse.Namespace, n_single: int, rows: list[dict[str, Any]]) -> None:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers"))
    import pg_peers

    ours = {r["name"]: r["consume_per_s"] for r in rows}
    for workers in (a.workers, 1):
        best = ("", 0.0)
        for peer, fn in (("pgqueuer", pg_peers.run_pgqueuer), ("procrastinate", pg_peers.run_procrastinate)):
            r = fn(a.url, a.n, workers, n_single)
            rows.append({"name": f"{peer}, {workers} in flight", **r})
            print(f"{peer + f', {workers} in flight':50s} publish {r['publish_one_per_s']:>9,.0f}/s one by one, "
                  f"{r['publish_batch_per_s']:>9,.0f}/s batched   consume {r['consume_per_s']:>9,.0f}/s", flush=True)
            if r["consume_per_s"] > best[1]:
                best = (peer, r["consume_per_s"])
        mine = ours[f"postgres, threads({a.workers}), push_many"] if workers > 1 else ours["postgres, solo, push_many"]
        print(f"  -> consume at {workers} in flight: ours {mine:,.0f}/s = {mine / best[1]:.0%} of {best[0]} "
              f"(target: at or above the faster peer)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20_000)
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--url", default=os.environ.get("BOOSTKERNEL_POSTGRES_URL",
                                                    "postgresql://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--json", default="benchmarks/results/postgres.json")
    ap.add_argument("--no-peers", dest="peers", action="store_false", help="skip PgQueuer and procrastinate")
    a = ap.parse_args()
    import psycopg

    schema = f"bk_bench_{uuid.uuid4().hex[:8]}"
    rows: list[dict[str, Any]] = []

    def add(name: str, r: dict[str, float]) -> None:
        rows.append({"name": name, **r})
        print(f"{name:50s} publish {r['publish_per_s']:>9,.0f}/s   consume {r['consume_per_s']:>9,.0f}/s", flush=True)

    try:
        n_single = min(a.n, 5000)  # one round trip per message: fewer of them
        add(f"postgres, threads({a.workers}), push one by one", run(a.url, schema, n_single, "threads", a.workers, False))
        add(f"postgres, threads({a.workers}), push_many", run(a.url, schema, a.n, "threads", a.workers, True))
        add("postgres, solo, push_many", run(a.url, schema, a.n, "solo", 1, True))
        if a.peers:
            peers(a, n_single, rows)
    finally:
        with psycopg.connect(a.url, autocommit=True) as c:
            c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    out = {"n": a.n, "workers": a.workers, "python": sys.version.split()[0], "rows": rows,
           "load_average": os.getloadavg(), "when": time.strftime("%Y-%m-%d %H:%M")}
    write_json(a.json, out, say=False)


if __name__ == "__main__":
    main()
