"""The ``sqs`` broker beside a raw boto3 loop of the same guarantee, rounds interleaved in one run.

    .ci/services.d/sqs.sh                                          # a local SQS-compatible server (moto) on :9324
    uv run python benchmarks/bench_sqs.py -n 1000 --repeat 3       # --url sqs+http://127.0.0.1:9324 --threads 16

Each round measures, against the same server, one after the other:

* raw boto3 (the reference, at-least-once like the plugin): publish with ``SendMessageBatch`` (10 per call);
  consume in one thread with ``ReceiveMessage`` (10 per call) + JSON decode + ``DeleteMessageBatch`` after
  "processing";
* boostkernel, with the booster's **default** settings: ``push_many()``, then ``consume()`` with ``solo``
  and with ``threads`` (x16) until every task ran (deletes batched by the ack thread, visibility heartbeat on).

The medians over the rounds are printed, and each consume row as a share of the raw loop (target >= 80%),
also round by round. Against moto the server is the bottleneck (one Python process that scans the queue on
every receive); against Amazon SQS the round-trip time is.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from _common import body, consume_rate, counting_booster

HERE = Path(__file__).resolve().parent
DEFAULT_URL = "sqs+http://127.0.0.1:9324"


def _client(url: str) -> Any:
    import boto3

    return boto3.client("sqs", endpoint_url=url.replace("sqs+", "", 1), region_name="us-east-1",
                        aws_access_key_id="local", aws_secret_access_key="local")


def raw(url: str, n: int) -> tuple[float, float]:
    """(publish/s, consume/s) of the raw boto3 loops."""
    c = _client(url)
    q = c.create_queue(QueueName=f"bench_raw_{uuid.uuid4().hex[:6]}")["QueueUrl"]
    bodies = [body(i).decode() for i in range(n)]
    t0 = time.perf_counter()
    for i in range(0, n, 10):
        c.send_message_batch(QueueUrl=q, Entries=[{"Id": str(j), "MessageBody": b}
                                                  for j, b in enumerate(bodies[i:i + 10])])
    pub = n / (time.perf_counter() - t0)
    done = 0
    t0 = time.perf_counter()
    while done < n:
        r = c.receive_message(QueueUrl=q, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=30)
        ms = r.get("Messages", [])
        for m in ms:
            orjson.loads(m["Body"])
        if ms:
            c.delete_message_batch(QueueUrl=q, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                        for i, m in enumerate(ms)])
            done += len(ms)
    con = n / (time.perf_counter() - t0)
    c.delete_queue(QueueUrl=q)
    return pub, con


def plugin(url: str, n: int, concurrency: str, workers: int) -> tuple[float, float]:
    """(publish/s of push_many, consume/s) with the booster's default settings."""
    done: list[None] = []
    f = counting_booster("sqs", url, concurrency, workers, None, done)
    t0 = time.perf_counter()
    f.push_many([(i,) for i in range(n)])
    pub = n / (time.perf_counter() - t0)
    con = consume_rate(f, n, done)
    f.broker.delete_queues()
    f.broker.close()
    return pub, con


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--url", default=os.environ.get("BOOSTKERNEL_SQS_URL", DEFAULT_URL))
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default=str(HERE / "results" / "sqs.json"))
    a = ap.parse_args()
    logging.getLogger("boostkernel").setLevel(logging.ERROR)
    rows: dict[str, dict[str, list[float]]] = {}

    def add(name: str, pub: float, con: float) -> None:
        r = rows.setdefault(name, {"publish": [], "consume": []})
        r["publish"].append(pub)
        r["consume"].append(con)
        print(f"{name:42s} publish {pub:8,.0f}/s   consume {con:8,.0f}/s", flush=True)

    print(f"SQS at {a.url}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at start; n={a.n}")
    ref, solo = "boto3 raw (receive 10 + delete batch)", "boostkernel solo (default prefetch)"
    thr = f"boostkernel threads x{a.threads} (default prefetch)"
    for rnd in range(a.repeat):
        print(f"-- round {rnd + 1} of {a.repeat}")
        add(ref, *raw(a.url, a.n))
        add(solo, *plugin(a.url, a.n, "solo", 1))
        add(thr, *plugin(a.url, a.n, "threads", a.threads))
    print(f"\nmedian of {a.repeat} round(s):")
    med = {k: {m: statistics.median(v) for m, v in r.items()} for k, r in rows.items()}
    for k, r in med.items():
        print(f"{k:42s} publish {r['publish']:8,.0f}/s   consume {r['consume']:8,.0f}/s")
    print()
    for k in (solo, thr):
        share = med[k]["consume"] / med[ref]["consume"]
        per = ", ".join(f"{o / r:.0%}" for o, r in zip(rows[k]["consume"], rows[ref]["consume"]))
        print(f"{k} / raw: {share:.0%} (target >= 80%): {'OK' if share >= 0.8 else 'below'}; per round: {per}")
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps({"n": a.n, "rows": rows, "medians": med,
                                        "load_average": os.getloadavg()[0]}, indent=1))


if __name__ == "__main__":
    main()
