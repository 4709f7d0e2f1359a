"""What Mosquitto itself guarantees across a worker crash, measured with raw paho clients, and what the
plugin adds (adoption of the dead session). The figures printed here are in docs/brokers/mqtt.md."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from boostkernel_mqtt.broker import MqttBroker

from boostkernel.broker import Outgoing
from boostkernel.testing.delivery import ConsumerProcess
from boostkernel.testing.helpers import service_url, wait_until

pytestmark = pytest.mark.service("mqtt")

MEMBER = r'''
import json, sys, paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
cid, topic, ack = sys.argv[1], sys.argv[2], sys.argv[3] == "ack"
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
c.manual_ack_set(True)
def on_message(cl, ud, m):
    print(json.dumps({"p": m.payload.decode(), "dup": m.dup}), flush=True)
    if ack:
        cl.ack(m.mid, m.qos)
def on_connect(cl, ud, flags, rc, props):
    print(json.dumps({"session_present": flags.session_present}), flush=True)
    cl.subscribe("$share/g/" + topic, qos=1)
c.on_message, c.on_connect = on_message, on_connect
p = Properties(PacketTypes.CONNECT); p.SessionExpiryInterval = 60
c.connect("127.0.0.1", int(sys.argv[4]), clean_start=False, properties=p)
c.loop_forever()
'''


class _Member:
    def __init__(self, cid: str, topic: str, ack: bool) -> None:
        port = service_url("mqtt").rsplit(":", 1)[1]
        self.proc = subprocess.Popen([sys.executable, "-c", MEMBER, cid, topic, "ack" if ack else "no", port],
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        self.lines: list[dict[str, Any]] = []
        import threading

        threading.Thread(target=self._read, daemon=True).start()
        assert wait_until(lambda: any("session_present" in x for x in self.lines), 10)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))

    def got(self) -> list[dict[str, Any]]:
        return [x for x in self.lines if "p" in x]

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            try:
                self.proc.stdout.close()
            except OSError:
                pass


def _publish(topic: str, payloads: list[str]) -> None:
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", int(service_url("mqtt").rsplit(":", 1)[1]))
    c.loop_start()
    for p in payloads:
        c.publish(topic, p, qos=1).wait_for_publish(10)
    c.disconnect()
    c.loop_stop()


@pytest.fixture
def topic() -> Iterator[str]:
    yield f"bk-test/crash/{uuid.uuid4().hex[:8]}"


def test_mosquitto_keeps_a_killed_members_messages_in_its_session(topic: str) -> None:
    """Raw MQTT: a share-group member killed with unacked QoS 1 messages keeps them in its session (the
    other member never gets them), keeps receiving its round-robin share while offline, and gets all of
    them (DUP) when the same client id connects again."""
    tag = uuid.uuid4().hex[:6]
    a, b = _Member(f"a-{tag}", topic, ack=False), _Member(f"b-{tag}", topic, ack=True)
    members: list[_Member] = [a, b]
    try:
        _publish(topic, [f"x{i}" for i in range(10)])
        assert wait_until(lambda: len(a.got()) + len(b.got()) == 10, 10)
        held = {x["p"] for x in a.got()}
        assert held, "round robin gave the first member nothing"
        a.kill()
        _publish(topic, [f"y{i}" for i in range(6)])
        time.sleep(1.0)  # nothing to wait on: this checks that nothing arrives
        b_got = {x["p"] for x in b.got()}
        assert not held & b_got, "Mosquitto gave a dead member's unacked messages to another member"
        offline_share = {f"y{i}" for i in range(6)} - b_got
        assert offline_share, "no message went to the offline member's session"
        t0 = time.monotonic()
        again = _Member(f"a-{tag}", topic, ack=True)
        members.append(again)
        assert wait_until(lambda: {x["p"] for x in again.got()} >= held | offline_share, 10)
        print(f"\nkilled member held {len(held)} unacked; other member got 0 of them; "
              f"{len(offline_share)} of 6 published while it was dead went to its offline session; "
              f"same client id back: all {len(held) + len(offline_share)} redelivered in "
              f"{time.monotonic() - t0:.2f}s, the held ones with DUP="
              f"{all(x['dup'] for x in again.got() if x['p'] in held)}")
        assert all(x["dup"] for x in again.got() if x["p"] in held)
    finally:
        for m in members:
            m.kill()


def test_plugin_adopts_a_killed_consumers_session() -> None:
    """With the plugin: a live consumer sees the killed one's will and hands its messages back."""
    queue = f"crash_{uuid.uuid4().hex[:8]}"
    opts = {"adopt_interval": 0.3, "session_expiry": 60}
    live = MqttBroker(queue, service_url("mqtt"), **opts)
    child: ConsumerProcess | None = None
    try:
        live.fetch(1, 0.2)  # join the group
        child = ConsumerProcess({"cls": "boostkernel_mqtt.broker:MqttBroker", "queue": queue,
                                 "url": service_url("mqtt"), "options": opts})
        assert child.fetch(1, 1, 1.0) == []  # joins the group (nothing published yet)
        msgs = [Outgoing(str(uuid.uuid4()), b'{"i": %d}' % i) for i in range(20)]
        live.publish_many(msgs)
        held = child.fetch(10, 5, 10)
        assert held, "the round robin gave the child nothing"
        time.sleep(0.5)  # let the round robin finish handing out
        seen: dict[str, int] = {}
        t0 = time.monotonic()
        child.kill()
        want = {h["id"] for h in held}
        deadline = time.monotonic() + 15
        back_at = None
        while time.monotonic() < deadline and len(seen) < len(msgs):
            for d in live.fetch(20, 0.2):
                seen[d.id] = d.delivery_count
                live.ack(d)
            if back_at is None and want <= seen.keys():
                back_at = time.monotonic() - t0
        assert want <= seen.keys(), f"{len(want - seen.keys())} of the killed consumer's messages never came back"
        assert {m.id for m in msgs} <= seen.keys()
        assert all(seen[i] >= 2 for i in want)
        print(f"\nkill -9 of a consumer holding {len(want)}: all back on the live consumer in {back_at:.2f}s")
    finally:
        if child is not None:
            child.stop()
        live.close()
