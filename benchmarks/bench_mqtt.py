"""The ``mqtt`` broker beside a raw paho-mqtt loop of the same guarantee, in one run.

    uv run python benchmarks/bench_mqtt.py -n 5000          # --url mqtt://127.0.0.1:1883 --workers 16

Raw loop (the reference): QoS 1 publishes pipelined (all sent, then every PUBACK waited for); a consumer
in a share group with a persistent session and manual acks (PUBACK after "processing"), Receive Maximum
100, in 1 client (solo) and in ``--raw-clients`` clients. The plugin: ``push()`` one by one (each waits
for its PUBACK), ``push_many()`` (pipelined), and no-op tasks consumed with ``solo`` and ``threads``.
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from typing import Any

from boostkernel import boost


def raw(host: str, port: int, n: int, clients: int) -> dict[str, float]:
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    out: dict[str, float] = {}
    for label, k in (("raw consume solo", 1), (f"raw consume {clients} clients", clients)):
        topic = f"bench/raw/{uuid.uuid4().hex[:6]}"
        done = [0]
        lock = threading.Lock()
        finished = threading.Event()
        subs = []
        for i in range(k):
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"raw-{uuid.uuid4().hex[:8]}",
                            protocol=mqtt.MQTTv5)
            c.manual_ack_set(True)

            def on_message(cl: Any, ud: Any, m: Any) -> None:
                cl.ack(m.mid, m.qos)
                with lock:
                    done[0] += 1
                    if done[0] >= n:
                        finished.set()

            c.on_message = on_message
            p = Properties(PacketTypes.CONNECT)
            p.SessionExpiryInterval, p.ReceiveMaximum = 60, 100
            c.connect(host, port, clean_start=False, properties=p)
            c.loop_start()
            c.subscribe(f"$share/raw/{topic}", qos=1)
            subs.append(c)
        time.sleep(0.5)
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        pub.connect(host, port)
        pub.loop_start()
        t0 = time.perf_counter()
        infos = [pub.publish(topic, b'{"x": 1}', qos=1) for _ in range(n)]
        for info in infos:
            info.wait_for_publish(60)
        if k == 1:
            out["raw publish QoS 1 pipelined"] = n / (time.perf_counter() - t0)
        if not finished.wait(600):
            raise RuntimeError(f"raw: {done[0]} of {n}")
        out[label] = n / (time.perf_counter() - t0)
        end = Properties(PacketTypes.DISCONNECT)
        end.SessionExpiryInterval = 0  # or the offline session keeps taking its share of the group
        for c in subs:
            c.disconnect(properties=end)
            c.loop_stop()
        pub.disconnect()
        pub.loop_stop()
    return out


def plugin(url: str, n: int, concurrency: str, workers: int, batch: bool) -> dict[str, float]:
    counter = [0]
    finished = threading.Event()
    lock = threading.Lock()

    @boost(f"bench_mqtt_{concurrency}_{uuid.uuid4().hex[:6]}", broker="mqtt", broker_url=url,
           concurrency=concurrency, workers=workers, validate_args=False)
    def noop(x: int) -> None:
        with lock:
            counter[0] += 1
            if counter[0] == n:
                finished.set()

    # consumers first (MQTT keeps a message only for subscribed sessions; the anchor would hold the rest)
    noop.consume()
    time.sleep(1.0)
    t0 = time.perf_counter()
    if batch:
        noop.push_many([(i,) for i in range(n)])
    else:
        for i in range(n):
            noop.push(i)
    t_pub = time.perf_counter() - t0
    if not finished.wait(900):
        raise RuntimeError(f"only {counter[0]} of {n} ran")
    t_all = time.perf_counter() - t0
    noop.stop()
    return {"publish_per_s": n / t_pub, "consume_per_s": n / t_all}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=5000)
    ap.add_argument("--url", default="mqtt://127.0.0.1:1883")
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--raw-clients", type=int, default=4)
    a = ap.parse_args()
    from urllib.parse import urlparse

    u = urlparse(a.url)
    rows: dict[str, Any] = raw(u.hostname or "127.0.0.1", u.port or 1883, a.n, a.raw_clients)
    r = plugin(a.url, a.n, "threads", a.workers, batch=True)
    rows["plugin push_many()"] = r["publish_per_s"]
    rows[f"plugin publish+consume threads x{a.workers}"] = r["consume_per_s"]
    r = plugin(a.url, a.n, "solo", 1, batch=False)
    rows["plugin push() one by one"] = r["publish_per_s"]
    rows["plugin publish+consume solo"] = r["consume_per_s"]
    for k, v in rows.items():
        print(f"{k:45s} {v:10,.0f}/s", flush=True)
    print(f"threads / raw {a.raw_clients} clients: "
          f"{rows[f'plugin publish+consume threads x{a.workers}'] / rows[f'raw consume {a.raw_clients} clients']:.0%}; "
          f"solo / raw solo: {rows['plugin publish+consume solo'] / rows['raw consume solo']:.0%}")


if __name__ == "__main__":
    main()
