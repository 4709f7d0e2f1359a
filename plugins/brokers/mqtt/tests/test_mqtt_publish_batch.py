"""The publisher builds its QoS 1 PUBLISH packets itself (``_publish_parts``), writes them in chunks within
the server's Receive Maximum and counts the PUBACKs (``bk_publish``): the bytes must be paho's, the window
respected, a dropped connection survived (the unacked messages sent again) or reported with the ids of the
messages that were not acknowledged."""

from __future__ import annotations

import socket
import threading
import uuid
from typing import Any
from urllib.parse import urlparse

import pytest
from boostkernel_mqtt.broker import (
    MqttBroker,
    PublishNotAcknowledged,
    _client_class,
    _props,
    _publish_parts,
    _task_parts,
)

from boostkernel.broker import Outgoing
from boostkernel.testing.helpers import service_url, wait_until


def _paho_packet(topic: str, payload: bytes, user: dict[str, str] | None, retain: bool, mid: int) -> bytes:
    """The packet paho's own ``publish`` path (``_send_publish``) queues for the same message."""
    import paho.mqtt.client as mqtt

    got: list[bytes] = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c._sock = object()  # type: ignore[assignment]  # "connected": _send_publish builds the packet
    c._packet_queue = lambda command, packet, mid, qos, info=None: got.append(bytes(packet))  # type: ignore[method-assign]
    props = _props("PUBLISH", UserProperty=list(user.items())) if user else None
    c._send_publish(mid, topic.encode(), payload, 1, retain, False, None, props)
    c._sock = None
    (packet,) = got
    return packet


CASES: list[tuple[str, bytes, dict[str, str] | None, bool]] = [
    ("boostkernel/orders", b'{"a":[1],"k":{}}', {"bk-id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"}, False),
    ("boostkernel/q", b"x" * 100, {"bk-id": "i", "bk-deliveries": "3", "bk-crashes": "1"}, False),
    ("boostkernel/q/dlq/é", b"body", {"bk-id": "é", "bk-reason": "r" * 300, "bk-failed-at": "1.5"}, True),
    ("boostkernel/q/_bk/member/c", b"", None, True),  # an empty retained publish (removal)
    ("t", b"", {}, False),
    ("t/ü", b"p" * 70000, {"k" * 200: "v" * 20000}, False),  # 3-byte remaining length, long properties
]
# remaining lengths around the variable byte integer's boundaries (127/128, 16383/16384)
CASES += [("b", b"z" * k, {"bk-id": "x"}, False) for k in (100, 105, 106, 107, 16360, 16361, 16362, 16363)]


@pytest.mark.parametrize("case", CASES, ids=range(len(CASES)))
def test_packets_are_pahos(case: tuple[str, bytes, dict[str, str] | None, bool]) -> None:
    topic, payload, user, retain = case
    for mid in (1, 255, 256, 65535):
        before, after = _publish_parts(topic.encode(), payload, user, retain)
        assert before + mid.to_bytes(2, "big") + after == _paho_packet(topic, payload, user, retain, mid)


def test_task_packets_are_the_generic_ones() -> None:
    """``publish_many``'s builder (the ``bk-id`` property only) gives ``_publish_parts``' bytes."""
    msgs = [Outgoing("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", b'{"a":1}'), Outgoing("é" * 100, b""),
            Outgoing("x", b"p" * 16360), Outgoing("y" * 300, b"q" * 70000)]
    for topic in (b"boostkernel/q", "boostkernel/ü".encode()):
        assert _task_parts(topic, msgs) == [_publish_parts(topic, m.body, {"bk-id": m.id}, False) for m in msgs]


def _offline_client(window: int) -> tuple[Any, list[bytes]]:
    """The publishing client, not connected, as after a CONNACK with Receive Maximum ``window``; what it
    writes is collected (paho's queue of packets)."""
    import paho.mqtt.client as mqtt

    c = _client_class()(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    written: list[bytes] = []
    c._packet_queue = lambda command, packet, mid, qos, info=None: written.append(bytes(packet))
    c.bk_connected(window)
    return c, written


def _split(data: bytes) -> list[tuple[int, bytes]]:
    """(packet id, payload) of each QoS 1 PUBLISH in ``data`` (topic "t", no properties)."""
    out = []
    i = 0
    while i < len(data):
        assert data[i] == 0x32
        n, mult, j = 0, 1, i + 1
        while True:
            b = data[j]
            j += 1
            n += (b & 127) * mult
            mult *= 128
            if not b & 128:
                break
        packet = data[j:j + n]
        tl = int.from_bytes(packet[:2], "big")
        mid = int.from_bytes(packet[2 + tl:4 + tl], "big")
        assert packet[4 + tl] == 0  # no properties
        out.append((mid, packet[5 + tl:]))
        i = j + n
    return out


def _puback(c: Any, mid: int, reason: int | None = None) -> None:
    c._in_packet = {"command": 0x40, "packet": bytearray(mid.to_bytes(2, "big") + (b"" if reason is None
                                                                                  else bytes((reason, 0))))}
    c._handle_pubackcomp("PUBACK")


def test_window_pubacks_and_a_reconnect() -> None:
    """At most the server's Receive Maximum in flight, one write per refill, every message counted once,
    a refused one (reason code >= 0x80) reported, the unacked ones sent again after a new CONNACK."""
    c, written = _offline_client(3)
    batch = c.bk_publish([_publish_parts(b"t", b"m%d" % i, None, False) for i in range(7)])
    assert len(written) == 1  # one write for the window
    assert [m for m, _ in _split(written[0])] == [1, 2, 3]
    assert [p for _, p in _split(written[0])] == [b"m0", b"m1", b"m2"]
    _puback(c, 2)
    _puback(c, 1, 0x87)  # not authorized
    _puback(c, 999)  # not ours: paho's handling, ignored
    assert (batch.left, batch.failed, bytes(batch.acked[:3])) == (5, [(0, 0x87)], b"\x01\x01\x00")
    with c._bk_plock:
        more = c._bk_fill()
    assert [(m, p) for m, p in _split(more)] == [(4, b"m3"), (5, b"m4")]
    assert len(c._bk_flight) == 3
    # the connection drops; the next CONNACK (Receive Maximum 2) sends the unacked ones first, new ids
    c._out_packet.clear()
    c.bk_connected(2)
    (pkt,) = list(c._out_packet)
    assert _split(pkt["packet"]) == [(6, b"m2"), (7, b"m3")]
    for mid in (6, 7):
        _puback(c, mid)
    with c._bk_plock:
        rest = c._bk_fill()
    assert _split(rest) == [(8, b"m4"), (9, b"m5")]
    _puback(c, 8)
    _puback(c, 9)
    _puback(c, 8)  # a second PUBACK for an id: ignored
    with c._bk_plock:
        last = c._bk_fill()
    assert _split(last) == [(10, b"m6")]
    assert not batch.done.is_set()
    _puback(c, 10)
    assert batch.done.is_set() and batch.left == 0 and all(batch.acked)
    assert c._bk_flight == {} and not c._bk_queue


def test_cancelled_batch_is_not_sent_and_names_the_unacked() -> None:
    c, written = _offline_client(2)
    batch = c.bk_publish([_publish_parts(b"t", b"m%d" % i, None, False) for i in range(5)])
    _puback(c, 1)
    assert c.bk_cancel(batch) == [1, 2, 3, 4]
    with c._bk_plock:
        assert c._bk_fill() == b""  # nothing more of it goes out
    _puback(c, 2)  # the one in flight is still counted
    assert c.bk_cancel(batch) == [2, 3, 4]


# --- against Mosquitto, through a proxy that drops the connection in the middle of a batch ----------------

class _Proxy:
    """TCP relay to Mosquitto; drops the first connection once ``cut_after`` bytes went to the server, and
    then refuses every connection if ``refuse``."""

    def __init__(self, cut_after: int, refuse: bool) -> None:
        u = urlparse(service_url("mqtt"))
        self.target = (u.hostname or "127.0.0.1", u.port or 1883)
        self.cut_after, self.refuse_after = cut_after, refuse
        self.up = 0
        self.cuts = 0
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.srv.settimeout(0.2)
        self.port = self.srv.getsockname()[1]
        self.stopped = threading.Event()
        self.accepter = threading.Thread(target=self._accept, daemon=True)
        self.accepter.start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                c, _ = self.srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.cuts and self.refuse_after:
                c.close()
                continue
            s = socket.create_connection(self.target)
            with self.lock:
                self.conns += [c, s]
            first = self.cuts == 0
            threading.Thread(target=self._pump, args=(c, s, first), daemon=True).start()
            threading.Thread(target=self._pump, args=(s, c, False), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket, count: bool) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
                if count and not self.cuts:
                    self.up += len(data)
                    if self.up >= self.cut_after:
                        self.cuts += 1
                        break
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.stopped.set()
        self.accepter.join(5)
        self.srv.close()
        with self.lock:
            for s in self.conns:
                s.close()


class _Subscriber:
    """A plain paho client on Mosquitto itself, subscribed to the queue's topic: the ``bk-id`` it receives."""

    def __init__(self, topic: str) -> None:
        import paho.mqtt.client as mqtt

        u = urlparse(service_url("mqtt"))
        self.ids: list[str] = []
        subscribed = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        c.on_message = lambda cl, ud, m: self.ids.append(dict(m.properties.UserProperty)["bk-id"])
        c.on_subscribe = lambda *a: subscribed.set()
        c.connect(u.hostname or "127.0.0.1", u.port or 1883)
        c.loop_start()
        c.subscribe(topic, qos=1)
        assert subscribed.wait(10)
        self.client = c

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


N = 800  # below Mosquitto's default max_queued_messages (1000) for the subscriber
BODY = b"y" * 100  # about 150 bytes a packet: the cut at 30,000 bytes falls in the middle of the batch


@pytest.mark.service("mqtt")
@pytest.mark.serial
def test_connection_dropped_mid_batch_is_resumed() -> None:
    queue = f"pubcut_{uuid.uuid4().hex[:8]}"
    proxy = _Proxy(cut_after=30_000, refuse=False)
    sub = _Subscriber(f"boostkernel/{queue}")
    pub = MqttBroker(queue, f"mqtt://127.0.0.1:{proxy.port}", anchor=False, backoff_max=0.2)
    try:
        ids = [f"m{i}" for i in range(N)]
        pub.publish_many([Outgoing(i, BODY) for i in ids])
        assert proxy.cuts == 1, "the connection was not dropped during the batch"
        assert wait_until(lambda: set(sub.ids) >= set(ids), 10), f"missing: {sorted(set(ids) - set(sub.ids))[:10]}"
    finally:
        pub.close()
        sub.close()
        proxy.close()


@pytest.mark.service("mqtt")
@pytest.mark.serial
def test_connection_lost_for_good_names_the_unacked() -> None:
    queue = f"pubcut_{uuid.uuid4().hex[:8]}"
    proxy = _Proxy(cut_after=30_000, refuse=True)
    sub = _Subscriber(f"boostkernel/{queue}")
    pub = MqttBroker(queue, f"mqtt://127.0.0.1:{proxy.port}", anchor=False, backoff_max=0.2, publish_timeout=2)
    try:
        ids = [f"m{i}" for i in range(N)]
        with pytest.raises(PublishNotAcknowledged, match="not connected") as err:
            pub.publish_many([Outgoing(i, BODY) for i in ids])
        unacked = set(err.value.unacked)
        assert not err.value.refused
        assert 0 < len(unacked) < N and unacked <= set(ids)
        acked = set(ids) - unacked
        # every message reported acknowledged did reach the server (and its subscriber)
        assert wait_until(lambda: set(sub.ids) >= acked, 10), f"acked, not delivered: {sorted(acked - set(sub.ids))[:10]}"
        # and the publisher works again once the server is reachable
        proxy.refuse_after = False
        pub.publish_many([Outgoing("after", BODY)])
        assert wait_until(lambda: "after" in sub.ids, 10)
    finally:
        pub.close()
        sub.close()
        proxy.close()
