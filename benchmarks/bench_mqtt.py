"""The ``mqtt`` broker beside a raw paho-mqtt loop of the same guarantee, rounds interleaved in one run.

    uv run python benchmarks/bench_mqtt.py -n 5000 --repeat 3   # --url mqtt://127.0.0.1:1883 --threads 16

Each round measures, against the same Mosquitto, one after the other:

* raw paho-mqtt (the reference): one consumer client in a share group with a persistent session, manual
  acks (PUBACK after "processing": JSON decode) and Receive Maximum 100; QoS 1 publishes pipelined (all
  sent, then every PUBACK waited for). Consume = messages / seconds from the first publish until the
  consumer has acked the last one (MQTT drops what no session subscribes to, so the consumer runs first);
* boostkernel, with the booster's **default** settings: ``push_many()`` (pipelined QoS 1 publishes, like the
  raw loop) into a running ``consume()`` with ``solo`` and with ``threads`` (x16), measured the same way.

The medians over the rounds are printed, and each consume row as a share of the raw loop (target >= 80%),
also round by round (raw and ours run seconds apart, so a load change shows there).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import orjson
from _common import body

from boostkernel import boost

HERE = Path(__file__).resolve().parent


def raw(host: str, port: int, n: int) -> tuple[float, float]:
    """(publish/s, publish+consume/s) of the raw paho-mqtt loop."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    topic = f"bench/raw/{uuid.uuid4().hex[:6]}"
    done = [0]
    finished = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"raw-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
    c.manual_ack_set(True)

    def on_message(cl: Any, ud: Any, m: Any) -> None:
        orjson.loads(m.payload)
        cl.ack(m.mid, m.qos)
        done[0] += 1  # one network thread calls this: no lock needed
        if done[0] >= n:
            finished.set()

    c.on_message = on_message
    p = Properties(PacketTypes.CONNECT)
    p.SessionExpiryInterval, p.ReceiveMaximum = 60, 100
    c.connect(host, port, clean_start=False, properties=p)
    c.loop_start()
    c.subscribe(f"$share/raw/{topic}", qos=1)
    time.sleep(0.5)  # the subscription is in place (SUBACK) well before this
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.connect(host, port)
    pub.loop_start()
    payloads = [body(i) for i in range(n)]  # the same bytes as a task message
    t0 = time.perf_counter()
    infos = [pub.publish(topic, b, qos=1) for b in payloads]
    for info in infos:
        info.wait_for_publish(60)
    t_pub = time.perf_counter() - t0
    if not finished.wait(600):
        raise RuntimeError(f"raw: {done[0]} of {n}")
    t_all = time.perf_counter() - t0
    end = Properties(PacketTypes.DISCONNECT)
    end.SessionExpiryInterval = 0  # or the offline session keeps taking its share of the group
    c.disconnect(properties=end)
    c.loop_stop()
    pub.disconnect()
    pub.loop_stop()
    return n / t_pub, n / t_all


def plugin(url: str, n: int, concurrency: str, workers: int) -> tuple[float, float]:
    """(publish/s, publish+consume/s) of ``push_many()`` into a running ``consume()``, default settings."""
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
    noop.push_many([(i,) for i in range(n)])
    t_pub = time.perf_counter() - t0
    if not finished.wait(900):
        raise RuntimeError(f"only {counter[0]} of {n} ran")
    t_all = time.perf_counter() - t0
    noop.stop()
    return n / t_pub, n / t_all


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=5000)
    ap.add_argument("--url", default=os.environ.get("BOOSTKERNEL_MQTT_URL", "mqtt://127.0.0.1:1883"))
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default=str(HERE / "results" / "mqtt.json"))
    a = ap.parse_args()
    logging.getLogger("boostkernel").setLevel(logging.ERROR)
    u = urlparse(a.url)
    host, port = u.hostname or "127.0.0.1", u.port or 1883
    rows: dict[str, dict[str, list[float]]] = {}

    def add(name: str, pub: float, con: float) -> None:
        r = rows.setdefault(name, {"publish": [], "consume": []})
        r["publish"].append(pub)
        r["consume"].append(con)
        print(f"{name:40s} publish {pub:10,.0f}/s   publish+consume {con:10,.0f}/s", flush=True)

    print(f"MQTT at {a.url}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at start; n={a.n}")
    solo, thr = "boostkernel solo (default prefetch)", f"boostkernel threads x{a.threads} (default prefetch)"
    for rnd in range(a.repeat):
        print(f"-- round {rnd + 1} of {a.repeat}")
        add("paho-mqtt raw (1 client, RM 100)", *raw(host, port, a.n))
        add(solo, *plugin(a.url, a.n, "solo", 1))
        add(thr, *plugin(a.url, a.n, "threads", a.threads))
    print(f"\nmedian of {a.repeat} round(s):")
    med = {k: {m: statistics.median(v) for m, v in r.items()} for k, r in rows.items()}
    for k, r in med.items():
        print(f"{k:40s} publish {r['publish']:10,.0f}/s   publish+consume {r['consume']:10,.0f}/s")
    rawc = rows["paho-mqtt raw (1 client, RM 100)"]["consume"]
    print()
    for k in (solo, thr):
        share = med[k]["consume"] / statistics.median(rawc)
        per = ", ".join(f"{o / r:.0%}" for o, r in zip(rows[k]["consume"], rawc))
        print(f"{k} / raw: {share:.0%} (target >= 80%): {'OK' if share >= 0.8 else 'below'}; per round: {per}")
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps({"n": a.n, "rows": rows, "medians": med,
                                        "load_average": os.getloadavg()[0]}, indent=1))


if __name__ == "__main__":
    main()
