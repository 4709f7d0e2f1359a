"""The ``sqs`` broker beside a raw boto3 loop of the same guarantee, in one run.

    .ci/services.d/sqs.sh                                    # a local SQS-compatible server (moto) on :9324
    uv run python benchmarks/bench_sqs.py -n 2000            # --url sqs+http://127.0.0.1:9324 --workers 16

Raw loop (the reference, at-least-once like the plugin): publish with ``SendMessageBatch`` (10 per call);
consume with ``ReceiveMessage`` (10, long polling) and ``DeleteMessageBatch`` after "processing", in 1
thread (solo) and in ``--raw-threads`` threads. The plugin: ``push()`` one by one, ``push_many()``, and
no-op tasks consumed with ``solo`` and ``threads`` (heartbeat thread, batched deletes). Against moto the
server is the bottleneck (one Python process); against Amazon SQS the round-trip time is.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from typing import Any

from _common import booster_run


def raw(url: str, n: int, threads: int) -> dict[str, float]:
    import boto3

    endpoint = url.replace("sqs+", "", 1)
    c = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="local",
                     aws_secret_access_key="local")
    q = c.create_queue(QueueName=f"bench_raw_{uuid.uuid4().hex[:6]}")["QueueUrl"]
    t0 = time.perf_counter()
    for i in range(0, n, 10):
        c.send_message_batch(QueueUrl=q, Entries=[{"Id": str(j), "MessageBody": json.dumps({"x": i + j})}
                                                  for j in range(min(10, n - i))])
    pub = n / (time.perf_counter() - t0)
    out = {"raw publish (SendMessageBatch)": pub}
    for label, k in (("raw consume solo", 1), (f"raw consume {threads} threads", threads)):
        if k > 1:  # refill
            for i in range(0, n, 10):
                c.send_message_batch(QueueUrl=q, Entries=[{"Id": str(j), "MessageBody": "{}"}
                                                          for j in range(min(10, n - i))])
        done = [0]
        lock = threading.Lock()

        def loop() -> None:
            while True:
                with lock:
                    if done[0] >= n:
                        return
                r = c.receive_message(QueueUrl=q, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                      VisibilityTimeout=30)
                ms = r.get("Messages", [])
                for m in ms:
                    json.loads(m["Body"])
                if ms:
                    c.delete_message_batch(QueueUrl=q, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                                for i, m in enumerate(ms)])
                    with lock:
                        done[0] += len(ms)

        t0 = time.perf_counter()
        ts = [threading.Thread(target=loop) for _ in range(k)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        out[label] = n / (time.perf_counter() - t0)
    c.delete_queue(QueueUrl=q)
    return out


def plugin(url: str, n: int, concurrency: str, workers: int, batch: bool) -> dict[str, float]:
    return booster_run(n, concurrency=concurrency, workers=workers, batch=batch, name="bench_sqs", purge=False,
                       timeout=900, broker="sqs", broker_url=url)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--url", default="sqs+http://127.0.0.1:9324")
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--raw-threads", type=int, default=4)
    a = ap.parse_args()
    rows: dict[str, Any] = raw(a.url, a.n, a.raw_threads)
    r = plugin(a.url, a.n, "threads", a.workers, batch=False)
    rows["plugin push() one by one"] = r["publish_per_s"]
    rows[f"plugin consume threads x{a.workers}"] = r["consume_per_s"]
    r = plugin(a.url, a.n, "solo", 1, batch=True)
    rows["plugin push_many()"] = r["publish_per_s"]
    rows["plugin consume solo"] = r["consume_per_s"]
    for k, v in rows.items():
        print(f"{k:45s} {v:10,.0f}/s", flush=True)
    print(f"consume threads / raw threads: {rows[f'plugin consume threads x{a.workers}'] / rows[f'raw consume {a.raw_threads} threads']:.0%}; "
          f"solo / raw solo: {rows['plugin consume solo'] / rows['raw consume solo']:.0%}")


if __name__ == "__main__":
    main()
