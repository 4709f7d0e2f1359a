"""The ``mqtt`` broker beside a raw paho-mqtt loop of the same guarantee, rounds interleaved in one run.

    uv run python benchmarks/bench_mqtt.py -n 5000 --repeat 3   # --url mqtt://127.0.0.1:1883 --threads 16

It starts a private Mosquitto (``max_queued_messages 0``, its other settings the defaults: Receive Maximum
20 for publishers, as on the shared server) unless ``--url`` names a server: the shared one's default ``max_queued_messages 1000``
dropped messages queued for a consumer that fell behind, and the round waited for them until its timeout.

Each round measures, against the same Mosquitto, one after the other:

* raw paho-mqtt (the reference): one consumer client in a share group with a persistent session, manual
  acks (PUBACK after "processing": JSON decode) and Receive Maximum 100; QoS 1 publishes pipelined (all
  sent, then every PUBACK waited for). Consume = messages / seconds from the first publish until the
  consumer has acked the last one (MQTT drops what no session subscribes to, so the consumer runs first);
* boostkernel, with the booster's **default** settings: ``push_many()`` (pipelined QoS 1 publishes, like the
  raw loop) into a running ``consume()`` with ``solo`` and with ``threads`` (x16), measured the same way.

The medians over the rounds are printed, and each consume row as a share of the raw loop (target >= 80%),
also round by round (raw and ours run seconds apart, so a load change shows there).

``--consume-only`` measures consumption alone: ``n`` messages are first queued in the consumer's offline
persistent session (raw: its client id; boostkernel: a fixed ``client_id`` option, the session created by a
first broker that disconnects gracefully), then the consumer connects and the time to the last ack (raw) or
the last task's end (boostkernel) is measured. It runs a private Mosquitto with ``max_queued_messages 0``
(needs the ``mosquitto`` binary): the shared one's default of 1000 would drop most of the backlog.

    uv run python benchmarks/bench_mqtt.py --consume-only -n 10000 --repeat 3
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


# --- consume only: a backlog waiting in the consumer's offline session, then the consumer connects ------
def private_mosquitto(base: Path, inflight: bool = False) -> tuple[str, Any]:
    """A private Mosquitto with ``max_queued_messages 0``: the shared one (default 1000) would drop most of a
    preloaded backlog (docs/brokers/mqtt.md, "Server settings that matter"). ``inflight`` False: also
    ``max_inflight_messages 0`` (no limit); True: Mosquitto's default (20, the Receive Maximum it gives
    publishers), as on the shared server."""
    limit = "" if inflight else "max_inflight_messages 0\n"
    from boostkernel.testing.private import PrivateProcess

    class Mosq(PrivateProcess):
        def command(self) -> list[str]:
            conf = base / "mosquitto.conf"
            conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                            f"max_queued_messages 0\n{limit}")
            return ["mosquitto", "-c", str(conf)]

    m = Mosq()
    m.start()
    return f"mqtt://127.0.0.1:{m.port}", m


def raw_consume_only(host: str, port: int, n: int) -> float:
    """Messages/s of the raw paho consumer (Receive Maximum 100, manual PUBACK after a JSON decode) draining
    ``n`` messages queued in its offline persistent session, from its CONNECT to the last ack."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    topic, cid = f"bench/raw/{uuid.uuid4().hex[:6]}", f"raw-{uuid.uuid4().hex[:8]}"
    p = Properties(PacketTypes.CONNECT)
    p.SessionExpiryInterval, p.ReceiveMaximum = 60, 100
    first = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
    first.connect(host, port, clean_start=True, properties=p)
    first.loop_start()
    first.subscribe(f"$share/raw/{topic}", qos=1)
    first.publish(f"{topic}/sync", b"", qos=1).wait_for_publish(10)  # after the SUBACK
    first.disconnect()  # the session (and its subscription) stays
    first.loop_stop()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.connect(host, port)
    pub.loop_start()
    for info in [pub.publish(topic, body(i), qos=1) for i in range(n)]:
        info.wait_for_publish(60)
    pub.disconnect()
    pub.loop_stop()
    done = [0]
    finished = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
    c.manual_ack_set(True)

    def on_message(cl: Any, ud: Any, m: Any) -> None:
        orjson.loads(m.payload)
        cl.ack(m.mid, m.qos)
        done[0] += 1
        if done[0] >= n:
            finished.set()

    c.on_message = on_message
    t0 = time.perf_counter()
    c.connect(host, port, clean_start=False, properties=p)
    c.loop_start()
    if not finished.wait(600):
        raise RuntimeError(f"raw consume-only: {done[0]} of {n}")
    took = time.perf_counter() - t0
    end = Properties(PacketTypes.DISCONNECT)
    end.SessionExpiryInterval = 0
    c.disconnect(properties=end)
    c.loop_stop()
    return n / took


def plugin_consume_only(url: str, n: int, concurrency: str, workers: int) -> float:
    """Messages/s of ``consume()`` (default settings) draining ``n`` messages queued in its consumer's
    offline session (fixed ``client_id``), from ``consume()`` to the last task's end."""
    from boostkernel_mqtt.broker import MqttBroker

    from boostkernel.broker import Outgoing
    from boostkernel.message import Envelope

    queue, cid = f"bench_mqtt_co_{concurrency}_{uuid.uuid4().hex[:6]}", f"bench-{uuid.uuid4().hex[:8]}"
    counter = [0]
    finished = threading.Event()
    lock = threading.Lock()

    @boost(queue, broker="mqtt", broker_url=url, concurrency=concurrency, workers=workers,
           validate_args=False, broker_options={"client_id": cid})
    def noop(x: int) -> None:
        with lock:
            counter[0] += 1
            if counter[0] == n:
                finished.set()

    first = MqttBroker(queue, url, noop.params, client_id=cid)  # the session the consumer comes back to
    first.fetch(1, 0.2)
    first._closed.set()  # its adopter stops; close() is not called: the session must stay
    assert first._sub is not None
    first._sub.close(end_session=False)  # a graceful DISCONNECT: no will, the session keeps its subscription
    pub = MqttBroker(queue, url, anchor=False)
    msgs = [Outgoing(e.id, e.encode()) for e in (Envelope(queue, [i], {}) for i in range(n))]
    for i in range(0, n, 1000):
        pub.publish_many(msgs[i:i + 1000])
    pub.close()
    t0 = time.perf_counter()
    noop.consume()
    if not finished.wait(900):
        raise RuntimeError(f"consume-only: only {counter[0]} of {n} ran")
    took = time.perf_counter() - t0
    noop.stop()
    return n / took


def consume_only(a: argparse.Namespace) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        url, server = private_mosquitto(Path(tmp))
        try:
            u = urlparse(url)
            host, port = u.hostname or "127.0.0.1", u.port or 1883
            print(f"consume only, private Mosquitto at {url} (max_queued_messages 0); {os.cpu_count()} CPUs; "
                  f"load average {os.getloadavg()[0]:.1f} at start; n={a.n}")
            rows: dict[str, list[float]] = {}
            solo, thr = "boostkernel solo (default prefetch)", f"boostkernel threads x{a.threads} (default prefetch)"
            rawk = "paho-mqtt raw (1 client, RM 100)"
            for rnd in range(a.repeat):
                print(f"-- round {rnd + 1} of {a.repeat}")
                for name, fn in ((rawk, lambda: raw_consume_only(host, port, a.n)),
                                 (solo, lambda: plugin_consume_only(url, a.n, "solo", 1)),
                                 (thr, lambda: plugin_consume_only(url, a.n, "threads", a.threads))):
                    v = fn()
                    rows.setdefault(name, []).append(v)
                    print(f"{name:40s} consume {v:10,.0f}/s", flush=True)
            print(f"\nmedian of {a.repeat} round(s); load average {os.getloadavg()[0]:.1f} at the end:")
            med = {k: statistics.median(v) for k, v in rows.items()}
            for k, v in med.items():
                print(f"{k:40s} consume {v:10,.0f}/s")
            for k in (solo, thr):
                per = ", ".join(f"{o / r:.0%}" for o, r in zip(rows[k], rows[rawk]))
                share = med[k] / med[rawk]
                print(f"{k} / raw: {share:.0%} (target >= 80%): {'OK' if share >= 0.8 else 'below'}; "
                      f"per round: {per}")
            Path(a.json).parent.mkdir(parents=True, exist_ok=True)
            Path(a.json).with_name("mqtt_consume_only.json").write_text(json.dumps(
                {"n": a.n, "rows": rows, "medians": med, "load_average": os.getloadavg()[0]}, indent=1))
        finally:
            server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=5000)
    ap.add_argument("--url", default=os.environ.get("BOOSTKERNEL_MQTT_URL"),
                    help="the server to measure (default: a private Mosquitto with max_queued_messages 0)")
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default=str(HERE / "results" / "mqtt.json"))
    ap.add_argument("--consume-only", action="store_true",
                    help="drain a backlog preloaded into the consumer's offline session (private Mosquitto)")
    a = ap.parse_args()
    logging.getLogger("boostkernel").setLevel(logging.ERROR)
    if a.consume_only:
        consume_only(a)
        return
    if a.url:
        publish_consume(a)
        return
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        a.url, server = private_mosquitto(Path(tmp), inflight=True)
        try:
            publish_consume(a)
        finally:
            server.stop()


def publish_consume(a: argparse.Namespace) -> None:
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
