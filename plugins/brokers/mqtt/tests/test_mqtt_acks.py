"""The consumer's client writes PUBACKs queued from many threads as one write per wake-up of paho's thread,
and reads the socket in chunks: every ack must still reach Mosquitto, in one session, in order with the
packets queued after it. Checked against the server: the session, resumed, has nothing left to resend."""

from __future__ import annotations

import threading
import uuid

import pytest
from boostkernel_mqtt.broker import MqttBroker

from boostkernel.broker import Delivery, Outgoing
from boostkernel.testing.helpers import service_url

pytestmark = pytest.mark.service("mqtt")


def test_acks_from_many_threads_all_reach_the_server() -> None:
    queue, cid = f"acks_{uuid.uuid4().hex[:8]}", f"bk-acks-{uuid.uuid4().hex[:8]}"
    url, n = service_url("mqtt"), 600  # below Mosquitto's default max_queued_messages (1000)
    first = MqttBroker(queue, url, client_id=cid, session_expiry=60, anchor=False, prefetch=n)
    second: MqttBroker | None = None
    pub = MqttBroker(queue, url, anchor=False)
    try:
        assert first.fetch(1, 0.2) == []  # joins the group: the session subscribes
        sizes = [10, 300, 5000, 70000]  # packets across the 64 KiB read chunks
        pub.publish_many([Outgoing(f"m{i}", b"x" * sizes[i % 4]) for i in range(n)])
        got: list[Delivery] = []
        while len(got) < n:
            batch = first.fetch(100, 10)
            assert batch, f"only {len(got)} of {n} delivered"
            got.extend(batch)
        assert sorted(d.id for d in got) == sorted(f"m{i}" for i in range(n))
        assert all(len(d.body) == sizes[int(d.id[1:]) % 4] for d in got)
        threads = [threading.Thread(target=lambda part=got[k::8]: [first.ack(d) for d in part]) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sub = first._sub
        assert sub is not None
        first._closed.set()  # the background threads stop (close() is not called: the session must stay)
        first._sync(sub)  # a packet queued after the acks: its PUBACK means the server has them all
        sub.close(end_session=False)  # graceful: the session stays, with whatever was not acked
        second = MqttBroker(queue, url, client_id=cid, session_expiry=60, anchor=False)
        again = second.fetch(100, 1.0)
        assert again == [], f"{len(again)} acked message(s) came back: their PUBACK never reached the server"
    finally:
        pub.close()
        if second is not None:
            second.close()
