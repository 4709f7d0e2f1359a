"""The broker's own JetStream pull protocol (issue #15): ack-subject parsing, the window bounding what a
consumer holds plus what it asked for, a waiting ``fetch`` woken by an arriving message, and pull requests
that expire at the server (status 408) being accounted for so that new ones go out."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from boostkernel_nats import broker as nats_broker
from boostkernel_nats.broker import NatsBroker, ack_info

from boostkernel.broker import Outgoing
from boostkernel.testing.helpers import service_url, wait_until


def test_ack_info_plain_and_domain_forms() -> None:
    assert ack_info("$JS.ACK.BK_q.bk.3.17.12.1796304662481247286.2") == (3, 17)
    # with domain and account hash (and a trailing random token)
    assert ack_info("$JS.ACK.hub.ACCHASH.BK_q.bk.2.40.33.1796304662481247286.0.tok") == (2, 40)
    assert ack_info("$JS.ACK.hub.ACCHASH.BK_q.bk.2.40.33.1796304662481247286.0") == (2, 40)
    assert ack_info("_INBOX.abc") is None
    assert ack_info("$JS.ACK.BK_q.bk.x.17.12.1796304662481247286.2") is None


@pytest.fixture
def queue() -> Iterator[str]:
    q = f"pull_{uuid.uuid4().hex[:8]}"
    yield q
    cleaner = NatsBroker(q, service_url("nats"))
    try:
        cleaner.delete_streams()
    finally:
        cleaner.close()


def _publish(queue: str, n: int) -> None:
    p = NatsBroker(queue, service_url("nats"))
    try:
        p.publish_many([Outgoing(f"m{i}", b"%d" % i) for i in range(n)])
    finally:
        p.close()


@pytest.mark.service("nats")
def test_window_bounds_held_plus_asked_and_acks_make_room(queue: str) -> None:
    _publish(queue, 30)
    b = NatsBroker(queue, service_url("nats"), window=8, lease=5.0)
    try:
        first = b.fetch(1, 10)
        assert len(first) == 1
        # the first request asked for the whole window: 8 pulled, no credit left, the rest stays queued
        assert wait_until(lambda: len(b._held) == 8 and b._credit == 0, 10), (len(b._held), b._credit)
        assert b.count() == 22
        rest = b.fetch(10, 1)
        assert len(rest) == 7, "fetch hands out what the buffer holds, not more"
        b.ack_many(first + rest[:3])  # 4 settled: half the window free, so a request for 4 goes out
        assert wait_until(lambda: b.count() == 18, 10), b.count()
        assert wait_until(lambda: len(b._held) == 8 and b._credit == 0, 10), (len(b._held), b._credit)
        assert b.count() == 18, "never more than the window held"
        got = b.fetch(10, 5)
        assert [d.id for d in got] == ["m8", "m9", "m10", "m11"]
        b.ack_many(rest[3:] + got)
    finally:
        b.close()
    # the acks made room for a pull ahead, which close NAKed back: the 18 not acked all come again at once
    c = NatsBroker(queue, service_url("nats"), window=30)
    try:
        left: list[str] = []
        assert wait_until(lambda: len(left.extend(d.id for d in c.fetch(30, 0.2)) or left) >= 18, 10), left
        assert sorted(left) == sorted(f"m{i}" for i in range(12, 30))
    finally:
        c.close()


@pytest.mark.service("nats")
def test_waiting_fetch_is_woken_by_an_arriving_message(queue: str) -> None:
    b = NatsBroker(queue, service_url("nats"), window=4)
    b.count()  # creates the stream and the consumer
    try:
        def produce() -> None:
            if wait_until(lambda: b._waiting == 1, 10):
                _publish(queue, 1)

        t = threading.Thread(target=produce)
        t.start()
        got = b.fetch(4, 20)
        t.join(20)
        assert [d.id for d in got] == ["m0"]
        assert got[0].delivery_count == 1
        b.ack_many(got)
    finally:
        b.close()


@pytest.mark.serial
@pytest.mark.service("nats")
def test_expired_pull_requests_are_accounted_and_renewed(queue: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests expire at the server after 0.3 s (status 408 with Nats-Pending-Messages); the local
    fallback (forget a request 60 s past its expiry) is out of reach, so only the status replies can
    free the credit for the next requests."""
    monkeypatch.setattr(nats_broker, "PULL_EXPIRES", 0.3)
    monkeypatch.setattr(nats_broker, "PULL_GRACE", 60.0)
    b = NatsBroker(queue, service_url("nats"), window=5)
    try:
        assert b.fetch(1, 0.1) == []
        assert wait_until(lambda: b._req_seq >= 4, 20), b._req_seq
        assert len(b._reqs) == 1 and b._credit == 5, (b._reqs, b._credit)
        _publish(queue, 2)
        got = b.fetch(5, 10)
        if len(got) < 2:
            got += b.fetch(5, 10)
        assert sorted(d.id for d in got) == ["m0", "m1"]
        b.ack_many(got)
    finally:
        b.close()
