"""Kafka throughput: boostkernel's `kafka` and `confluent-kafka` brokers vs raw client loops.

Measures, on the server at BOOSTKERNEL_KAFKA_URL (default kafka://127.0.0.1:9092, e.g. tansu started by
.ci/services.d/kafka.sh):

* publish: ``push_many`` (batched, every message acknowledged by the broker) and ``push`` (one message,
  acknowledged before it returns), against the raw client's produce loop + flush;
* consume: no-op tasks run by ``consume()`` (threads, 16 workers, contiguous-offset commits), against the
  raw client's poll loop committing after each batch. The clock starts at the first message, so the
  consumer-group join (reported separately) is not counted.

    uv run python benchmarks/bench_kafka.py [--n 20000] [--single 2000] [--brokers kafka,confluent-kafka]
        [--no-delivery-counts]
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import uuid
import warnings

from boostkernel import boost
from boostkernel.testing.helpers import service_url

URL = os.environ.get("BOOSTKERNEL_KAFKA_URL") or service_url("kafka")
BOOTSTRAP = URL.split("://", 1)[-1].split("/", 1)[0]
OPTS: dict[str, object] = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500, "partitions": 4}


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}/s"


def bench_boost(broker: str, n: int, single: int) -> dict[str, str]:
    q = f"bench_{broker.replace('-', '_')}_{uuid.uuid4().hex[:6]}"
    done = threading.Event()
    count = [0]
    first = [0.0]
    lock = threading.Lock()

    @boost(q, broker=broker, broker_url=URL, workers=16, broker_options=OPTS)
    def noop(i: int) -> None:
        with lock:
            if count[0] == 0:
                first[0] = time.perf_counter()
            count[0] += 1
            if count[0] >= n + single:
                done.set()

    noop.broker.ensure_topics(noop.broker.topic)
    t0 = time.perf_counter()
    noop.push_many([(i,) for i in range(n)])
    t_many = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(single):
        noop.push(i)
    t_single = time.perf_counter() - t0

    t_start = time.perf_counter()
    noop.consume()
    if not done.wait(300):
        raise SystemExit(f"{broker}: only {count[0]} of {n + single} tasks ran in 300 s")
    t_end = time.perf_counter()
    noop.stop()
    return {"publish push_many": _rate(n, t_many), "publish push (acked each)": _rate(single, t_single),
            "consume no-op tasks": _rate(n + single - 1, t_end - first[0]),
            "group join (s)": f"{first[0] - t_start:.1f}"}


def bench_raw_kafka_python(n: int) -> dict[str, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka import KafkaConsumer, KafkaProducer
        from kafka.admin import KafkaAdminClient, NewTopic
    topic = f"bench_raw_kp_{uuid.uuid4().hex[:6]}"
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    admin.create_topics([NewTopic(topic, 4, 1)])
    admin.close()
    p = KafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", linger_ms=1)
    body = b'{"v":1,"id":"x","queue":"q","args":[1],"kwargs":{},"published_at":0,"attempt":0}'
    t0 = time.perf_counter()
    for _ in range(n):
        p.send(topic, body)
    p.flush()
    t_pub = time.perf_counter() - t0
    p.close()
    c = KafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=f"g_{topic}", enable_auto_commit=False,
                      auto_offset_reset="earliest", session_timeout_ms=6000, heartbeat_interval_ms=500)
    c.subscribe([topic])
    got, t_first = 0, 0.0
    while got < n:
        batch = c.poll(100)
        if batch and not t_first:
            t_first = time.perf_counter()
        got += sum(len(v) for v in batch.values())
        if batch:
            c.commit()
    t_con = time.perf_counter() - t_first
    c.close()
    return {"publish": _rate(n, t_pub), "consume": _rate(n, t_con)}


def bench_raw_confluent(n: int) -> dict[str, str]:
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"bench_raw_ck_{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    for f in admin.create_topics([NewTopic(topic, 4, 1)]).values():
        f.result()
    p = Producer({"bootstrap.servers": BOOTSTRAP, "acks": "all", "linger.ms": 1, "enable.idempotence": False})
    body = b'{"v":1,"id":"x","queue":"q","args":[1],"kwargs":{},"published_at":0,"attempt":0}'
    t0 = time.perf_counter()
    for _ in range(n):
        while True:
            try:
                p.produce(topic, body)
                break
            except BufferError:
                p.poll(0.01)
    p.flush()
    t_pub = time.perf_counter() - t0
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"g_{topic}", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
    c.subscribe([topic])
    got, t_first = 0, 0.0
    while got < n:
        msgs = c.consume(500, 0.1)
        if msgs and not t_first:
            t_first = time.perf_counter()
        got += sum(1 for m in msgs if m.error() is None)
        if msgs:
            c.commit(asynchronous=False)
    t_con = time.perf_counter() - t_first
    c.close()
    return {"publish": _rate(n, t_pub), "consume": _rate(n, t_con)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="messages per batched publish / consume run")
    ap.add_argument("--single", type=int, default=2000, help="messages published one by one with push()")
    ap.add_argument("--brokers", default="kafka,confluent-kafka")
    ap.add_argument("--no-delivery-counts", action="store_true",
                    help="broker_options delivery_counts=False (no read marks in <topic>.attempts)")
    a = ap.parse_args()
    if a.no_delivery_counts:
        OPTS["delivery_counts"] = False
    print(f"server {URL}; n={a.n}, single={a.single}, broker_options={OPTS}")
    rows = []
    for b in a.brokers.split(","):
        r = bench_boost(b, a.n, a.single)
        rows.append((f"boostkernel {b}", r["publish push_many"], r["publish push (acked each)"],
                     r["consume no-op tasks"], r["group join (s)"]))
        print(rows[-1], flush=True)
        raw = bench_raw_kafka_python(a.n) if b == "kafka" else bench_raw_confluent(a.n)
        rows.append((f"raw {'kafka-python' if b == 'kafka' else 'confluent-kafka'} loop", raw["publish"], "-",
                     raw["consume"], "-"))
        print(rows[-1], flush=True)
    print("\n| client | publish (batched) | publish (one at a time, acked) | consume | group join s |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
