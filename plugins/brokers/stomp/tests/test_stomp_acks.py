"""The consumer's hand-built ACK frames and their writer (boostkernel_stomp.broker.ack_frame, _AckWriter):
the bytes stomp.py would send, the order and completeness of acks written from many threads, and against
the shared ActiveMQ (127.0.0.1:61613): acks from many threads all reach the server, so none of the acked
messages comes back to the next consumer."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
import stomp
import stomp.utils
from boostkernel_stomp.broker import StompBroker, _AckWriter, ack_frame

from boostkernel.broker import Delivery, Outgoing
from boostkernel.testing.helpers import service_url

ACK_IDS = [
    "ID:bk-host-40123-1764790000000-3:1:1:1:17",  # what ActiveMQ 5.x sends: colons escaped as \c
    "plain",
    "back\\slash",
    "new\nline and carriage\rreturn",
    "a:b\\c\nd\re",
    "unicodé-€-✓",
]


@pytest.mark.parametrize("ack_id", ACK_IDS)
def test_ack_frame_is_what_stomp_py_sends(ack_id: str) -> None:
    conn = stomp.Connection12([("127.0.0.1", 1)], auto_decode=False)  # never connected: send() captured
    sent: list[bytes] = []
    conn.transport.send = sent.append
    conn.ack(ack_id)
    assert sent == [ack_frame(ack_id)]


class _FakeTransport:
    """Records every write; the first write blocks until ``release`` is set, so other threads queue."""

    blocking = True

    def __init__(self, fail_first: bool = False) -> None:
        self.writes: list[bytes] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail_first = fail_first

    def send(self, data: bytes) -> None:
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(10)
            if self.fail_first:
                raise OSError("connection reset")
        self.writes.append(data)


def test_ack_writer_keeps_each_threads_order_and_loses_nothing() -> None:
    t = _FakeTransport()
    w = _AckWriter(t, 1)
    first = threading.Thread(target=w.write, args=([ack_frame("first")],))
    first.start()
    assert t.entered.wait(10)  # the first thread is inside send(): the others queue behind it
    n_threads, per_thread = 8, 50
    queued = threading.Barrier(n_threads + 1)

    def worker(k: int) -> None:
        for i in range(per_thread):
            if i % 10 == 9:
                w.write([ack_frame(f"t{k}-{i}-a"), ack_frame(f"t{k}-{i}-b")])  # an ack_many
            else:
                w.write([ack_frame(f"t{k}-{i}")])
        queued.wait(10)

    workers = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
    for th in workers:
        th.start()
    queued.wait(10)  # every worker returned from all its writes while the first write was still blocked
    assert t.writes == []
    t.release.set()
    first.join(10)
    for th in workers:
        th.join(10)
    assert w.flush(5)
    data = b"".join(t.writes)
    frames = [f for f in data.split(b"\x00") if f]
    ids = [f.split(b"\n")[1][len(b"id:"):].decode() for f in frames]
    assert ids[0] == "first"
    assert len(ids) == 1 + n_threads * (per_thread + per_thread // 10)
    for k in range(n_threads):
        mine = [i for i in ids if i.startswith(f"t{k}-")]
        want = []
        for i in range(per_thread):
            want += [f"t{k}-{i}-a", f"t{k}-{i}-b"] if i % 10 == 9 else [f"t{k}-{i}"]
        assert mine == want
    assert len(t.writes) <= 3  # the first frame, then everything queued behind it in one write


def test_ack_writer_drops_the_queue_of_a_failed_write_and_writes_again() -> None:
    t = _FakeTransport(fail_first=True)
    w = _AckWriter(t, 1)
    errors: list[BaseException] = []

    def first() -> None:
        try:
            w.write([ack_frame("lost-1")])
        except OSError as exc:
            errors.append(exc)

    th = threading.Thread(target=first)
    th.start()
    assert t.entered.wait(10)
    w.write([ack_frame("lost-2")])  # queued behind the failing write: dropped with it
    t.release.set()
    th.join(10)
    assert len(errors) == 1 and w.flush(5)
    w.write([ack_frame("after")])  # not stuck "writing": this thread writes it
    assert t.writes == [ack_frame("after")]


needs_activemq = pytest.mark.service("stomp")


def _publish(url: str, queue: str, n: int) -> None:
    producer = StompBroker(queue, url)
    try:
        producer.publish_many([Outgoing(f"m{i}", b"{}") for i in range(n)])
    finally:
        producer.close()


def _fetch_all(b: StompBroker, n: int) -> list[Delivery]:
    got: list[Delivery] = []
    while len(got) < n:
        batch = b.fetch(n - len(got), 10.0)
        assert batch, f"only {len(got)} of {n} delivered"
        got += batch
    return got


@needs_activemq
def test_acks_from_many_threads_reach_activemq_and_none_comes_back() -> None:
    url = service_url("stomp")
    queue = f"bk_acks_{uuid.uuid4().hex[:8]}"
    n, n_threads = 200, 8  # ActiveMQ pages 200 messages in at a time (maxPageSize): all held unacked at once
    _publish(url, queue, n)
    consumer = StompBroker(queue, url, prefetch=n)
    try:
        got = _fetch_all(consumer, n)
        assert len({d.id for d in got}) == n
        link: Any = consumer._con
        assert "_BaseTransport__read_frames" in vars(link.conn.transport)  # parsed by our parse_frame
        start = threading.Barrier(n_threads)

        def worker(k: int) -> None:
            mine = got[k::n_threads]
            start.wait(10)
            for i in range(0, len(mine), 5):
                chunk = mine[i:i + 5]
                if (i // 5) % 2:
                    consumer.ack_many(chunk)
                else:
                    for d in chunk:
                        consumer.ack(d)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
    finally:
        consumer.close()  # waits for the acks being written, then disconnects: unacked ones would come back
    again = StompBroker(queue, url, prefetch=n)
    try:
        back = again.fetch(n, 3.0)
        assert back == [], f"{len(back)} acked message(s) came back, e.g. {[d.id for d in back[:5]]}"
        again.publish(Outgoing("probe", b"{}"))  # the new consumer does receive: the empty fetch was not a stall
        probe = again.fetch(1, 10.0)
        assert [d.id for d in probe] == ["probe"]
        again.ack(probe[0])
    finally:
        again.close()


@needs_activemq
def test_unacked_messages_do_come_back_after_a_reconnect() -> None:
    """The counterpart of the test above: what was not acked is redelivered (so its empty fetch means
    something), and an ack_many mixing both connections' deliveries acks only the live connection's."""
    url = service_url("stomp")
    queue = f"bk_acks_{uuid.uuid4().hex[:8]}"
    _publish(url, queue, 20)
    first = StompBroker(queue, url, prefetch=20)
    try:
        got = _fetch_all(first, 20)
        first.ack_many(got[:5])
    finally:
        first.close()
    second = StompBroker(queue, url, prefetch=20)
    try:
        back = _fetch_all(second, 15)
        assert sorted(d.id for d in back) == sorted(d.id for d in got[5:])
        assert all(d.delivery_count >= 2 for d in back)  # flagged redelivered
        link: Any = second._con
        stale = [Delivery(d.id, d.body, (link.generation - 1, d.tag[1])) for d in back[:3]]
        second.ack_many(stale + back)  # the stale ones are dropped, not sent on this connection
    finally:
        second.close()
    third = StompBroker(queue, url, prefetch=20)
    try:
        assert third.fetch(20, 3.0) == []
    finally:
        third.close()


FRAMES = [
    b"MESSAGE\ncontent-length:2\nexpires:0\ndestination:/queue/q\nsubscription:bk-1\npriority:4\nbk-id:abc\n"
    b"ack:ID\\cbk-host-40123-1764790000000-3\\c1\\c1\\c1\\c17\nmessage-id:ID\\cbk-host-1\\c1\npersistent:true\n"
    b"content-type:application/json\nredelivered:true\ntimestamp:1764790000000\n\n{}",
    b"RECEIPT\nreceipt-id:77\n\n",
    b"CONNECTED\nversion:1.2\nheart-beat:10000,10000\nserver:ActiveMQ/5.17.6\n\n",
    b"ERROR\nmessage:Unknown ACK\\c x\ncontent-type:text/plain\n\nbody with : colons\nand lines\n",
    b"MESSAGE\nrepeated:first\nrepeated:second\n\n",  # the first of repeated headers wins
    b"MESSAGE\nno colon line\n:empty key\nempty-value:\nk:v:w\n\nbody\x00with nul",
    b"MESSAGE\nesc:a\\\\b\\nc\\rd\\ce\\x\nk\\cey:v\n\n",  # escapes, an unknown one kept, an escaped key
    b"MESSAGE\nkey\\:value ends in a backslash\\\ntwo:\\\\c is not a colon\nthree:\\c\\\\\\n\\x\n\n",
    b"MESSAGE\nutf8:\xc3\xa9\xe2\x82\xac\nbad:\xff\xfe\n\n\xff",
    b"MESSAGE\r\ncrlf:yes\r\n\r\nbody",  # CRLF line ends: stomp.py's parser
    b"\nMESSAGE\nleading:newline\n\nbody",  # a leading newline: stomp.py's parser
    b"MESSAGE\nno-blank-line:at-all",
    b"\n\n",
    b"",
]


@pytest.mark.parametrize("frame", FRAMES)
def test_parse_frame_is_stomp_pys(frame: bytes) -> None:
    from boostkernel_stomp.broker import parse_frame

    ours, theirs = parse_frame(frame), stomp.utils.parse_frame(frame)
    if theirs is None:
        assert ours is None
        return
    assert (ours.cmd, ours.headers, ours.body) == (theirs.cmd, theirs.headers, theirs.body)
