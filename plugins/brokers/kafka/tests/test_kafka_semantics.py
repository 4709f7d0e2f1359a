"""Log-specific behaviour against the real server: contiguous commits, delayed requeue, partial DLQ replay."""

from __future__ import annotations

import logging
import threading
import time
import uuid

import pytest

from boostkernel.broker import Outgoing
from boostkernel.message import Envelope
from boostkernel.testing import wait_until
from boostkernel.testing.helpers import service_url

pytestmark = pytest.mark.service("kafka")


def _broker(queue: str, **kw: object):  # type: ignore[no-untyped-def]
    from boostkernel_kafka.broker import KafkaBroker

    return KafkaBroker(queue, service_url("kafka"), None, session_timeout_ms=2000, heartbeat_interval_ms=300,
                       partitions=1, commit_interval=0.1, **kw)


def _msgs(n: int) -> list[Outgoing]:
    envs = [Envelope("sem", [i]) for i in range(n)]
    return [Outgoing(e.id, e.encode()) for e in envs]


def _fetch(b, n: int, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    out: list = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        out += b.fetch(n - len(out), 0.2)
    return out


def test_out_of_order_acks_commit_only_the_contiguous_prefix() -> None:
    q = f"sem_{uuid.uuid4().hex[:8]}"
    b = _broker(q)
    observer = _broker(q)  # does not consume: its count() is the group's lag, the committed offset
    try:
        b.publish_many(_msgs(20))
        got = _fetch(b, 20)
        assert len(got) == 20
        assert b.count() == 0, "count() of the consumer that holds all 20 must exclude them"
        b.ack_many(got[5:])  # 0-4 still "running"
        time.sleep(0.5)  # several commit intervals pass
        assert observer.count() == 20, "the committed offset passed records that had not finished"
        b.ack_many(got[:5])
        assert wait_until(lambda: observer.count() == 0, 10)
    finally:
        b.close()
        observer.close()


def test_count_excludes_what_this_consumer_holds_until_it_closes() -> None:
    q = f"sem_{uuid.uuid4().hex[:8]}"
    b = _broker(q)
    observer = _broker(q)
    try:
        b.publish_many(_msgs(3))
        assert len(_fetch(b, 1)) == 1
        assert wait_until(lambda: b.count() == 2, 10), b.count()
        assert observer.count() == 3, "another broker cannot know what this consumer holds"
        b.close()  # the unacked one goes back: waiting again
        assert b.count() == 3
    finally:
        b.close()
        observer.close()


def test_unfinished_records_come_back_to_the_next_member() -> None:
    q = f"sem_{uuid.uuid4().hex[:8]}"
    first = _broker(q)
    first.publish_many(_msgs(10))
    got = _fetch(first, 10)
    first.ack_many(got[:3] + got[4:])  # offset 3 never finishes
    first.close()
    second = _broker(q)
    try:
        again = _fetch(second, 7, timeout=20)
        # everything from the first unfinished offset on is delivered again; nothing before it
        assert [d.id for d in again] == [d.id for d in got[3:]]
        second.ack_many(again)
    finally:
        second.close()


def test_delivery_count_marks_only_what_reached_the_application() -> None:
    """Read marks: records fetched by the application and not finished come back to the next member with
    delivery_count 2; records that were only in the closed consumer's buffer come back with 1."""
    q = f"sem_{uuid.uuid4().hex[:8]}"
    first = _broker(q)
    first.publish_many(_msgs(10))
    first.fetch(0, 0.1)  # starts the consumer
    assert wait_until(lambda: len(first._buffer) == 10, 20), "the consumer did not poll the 10 records"
    got = first.fetch(4, 1.0)
    assert len(got) == 4
    first.close()  # 4 fetched and unfinished, 6 only buffered
    second = _broker(q)
    try:
        again = _fetch(second, 10, timeout=20)
        counts = {d.id: d.delivery_count for d in again}
        assert [counts[d.id] for d in got] == [2, 2, 2, 2], counts
        assert sorted(counts.values()) == [1] * 6 + [2] * 4, counts
        assert all(d.crashes == 0 for d in again), "nothing was running: no crash may be charged"
        second.ack_many(again)
    finally:
        second.close()


def test_nack_with_delay_republishes_later_and_counts_the_delivery() -> None:
    b = _broker(f"sem_{uuid.uuid4().hex[:8]}")
    try:
        b.publish(_msgs(1)[0])
        d = _fetch(b, 1)[0]
        t0 = time.monotonic()
        b.nack(d, requeue=True, delay=1.0)
        again = _fetch(b, 1)
        assert time.monotonic() - t0 >= 0.9
        assert [x.id for x in again] == [d.id] and again[0].delivery_count == 2
        b.ack(again[0])
    finally:
        b.close()


def test_replay_of_some_dead_letters_keeps_the_others() -> None:
    b = _broker(f"sem_{uuid.uuid4().hex[:8]}")
    try:
        msgs = _msgs(3)
        b.publish_many(msgs)
        got = _fetch(b, 3)
        for i, d in enumerate(got):
            b.dead_letter(d, f"bad {i}")
        assert sorted(r.id for r in b.dead_letters()) == sorted(m.id for m in msgs)
        assert b.replay_dead_letters([got[0].id]) == 1
        assert sorted(r.id for r in b.dead_letters()) == sorted(d.id for d in got[1:])
        back = _fetch(b, 1)
        assert [x.id for x in back] == [got[0].id]
        b.ack(back[0])
        assert b.purge_dead_letters() == 2
        assert b.dead_letters() == []
    finally:
        b.close()


def test_queue_name_that_is_no_topic_fails_at_decoration() -> None:
    from boostkernel import boost
    from boostkernel.errors import ConfigError

    with pytest.raises(ConfigError, match="Kafka topic"):
        @boost("bad:name", broker="kafka")
        def f() -> None: ...


def test_purge_by_a_consuming_member_keeps_what_it_handed_out() -> None:
    """purge() on a broker whose own consumer holds records: the waiting ones are skipped, the held ones stay
    in flight, so a crash (here: a close without acking them) gives them to the next member, not to nobody."""
    q = f"sem_{uuid.uuid4().hex[:8]}"
    b = _broker(q)
    try:
        b.publish_many(_msgs(6))
        held = _fetch(b, 2)
        assert len(held) == 2
        assert b.purge() == 4, "purge() must skip exactly the 4 records that were not handed out"
        assert b.count() == 0
        assert b.fetch(6, 1.0) == [], "a purged record was delivered"
    finally:
        b.close()  # held, never acked: the commit must not have passed them
    nxt = _broker(q)
    try:
        back = _fetch(nxt, 2)
        assert {d.id for d in held} <= {d.id for d in back}, "purge() skipped records a consumer still held"
        nxt.ack_many(back + nxt.fetch(10, 1.0))
    finally:
        nxt.close()


def _any_broker(broker_name: str, queue: str):  # type: ignore[no-untyped-def]
    if broker_name == "kafka":
        return _broker(queue)
    pytest.importorskip("confluent_kafka")
    from boostkernel_confluent_kafka.broker import ConfluentKafkaBroker

    return ConfluentKafkaBroker(queue, service_url("kafka"), None, session_timeout_ms=2000,
                                heartbeat_interval_ms=300, partitions=1, commit_interval=0.1)


@pytest.mark.parametrize("broker_name", ["kafka", "confluent-kafka"])
def test_purge_from_outside_is_done_by_the_member_and_spares_later_records(broker_name: str) -> None:
    """purge() from a broker that does not consume, while a member owns the partition and holds 2 records: the
    member skips the 4 waiting ones (the group takes no commit from outside while it lives), not the 3
    published after the purge began; the held ones stay in flight, and when they come back to the next
    member the skipped ones do not come with them."""
    q = f"sem_{uuid.uuid4().hex[:8]}"
    b = _any_broker(broker_name, q)
    purger = _any_broker(broker_name, q)
    try:
        b.publish_many(_msgs(6))
        held = _fetch(b, 2)
        assert len(held) == 2
        b._control_next = float("inf")  # the member serves no purge request until the late records are out
        result: list[int] = []
        t = threading.Thread(target=lambda: result.append(purger.purge()))
        t.start()
        assert wait_until(lambda: purger._i_positions(purger.control_topic, "probe")[0][2] > 0, 20), \
            "purge() published no request on the control topic"
        late = _msgs(3)
        purger.publish_many(late)
        b._control_next = 0.0
        t.join(30)
        assert result == [4], f"purge() returned {result}: 6 published, 2 held, so 4 were waiting"
        assert b.count() == 3, "count() of the member must be the 3 records published after the purge"
        got = _fetch(b, 3, 10)
        assert {d.id for d in got} == {m.id for m in late}, "purge() skipped records published after it began"
        assert b.fetch(6, 1.0) == [], "a purged record was delivered"
        b.ack_many(got)
    finally:
        b.close()  # the held ones, never acked, go back to the group
        purger.close()
    nxt = _any_broker(broker_name, q)
    try:  # the late ones run again too: acked, but the commit stops at the first unfinished record
        back = _fetch(nxt, 5)
        back += nxt.fetch(6, 2.0)
        assert {d.id for d in back} == {d.id for d in held} | {m.id for m in late}, \
            "the records purged behind the held ones came back with them"
        nxt.ack_many(back)
        assert wait_until(lambda: nxt.count() == 0, 10)
    finally:
        nxt.close()


@pytest.mark.serial
@pytest.mark.parametrize("broker_name", ["kafka", "confluent-kafka"])
def test_rebalance_waits_for_the_running_record_not_for_prefetched_ones(broker_name: str) -> None:
    """A member joins while another runs record 0 (``started``) and holds record 1 only prefetched: the
    partition stays with the runner until it acks record 0 (far past ``revoke_timeout``); then the new member
    gets record 1 (never started, so not committed) and never record 0."""
    q = f"sem_{uuid.uuid4().hex[:8]}"
    if broker_name == "kafka":
        a, b = _broker(q, revoke_timeout=1.0), _broker(q, revoke_timeout=1.0)
    else:
        from boostkernel_confluent_kafka.broker import ConfluentKafkaBroker

        a, b = (ConfluentKafkaBroker(q, service_url("kafka"), None, session_timeout_ms=2000,
                                     heartbeat_interval_ms=300, partitions=1, commit_interval=0.1,
                                     revoke_timeout=1.0) for _ in range(2))
    try:
        msgs = _msgs(2)
        a.publish_many(msgs)
        held = _fetch(a, 2)
        assert [d.id for d in held] == [m.id for m in msgs]
        a.started(held[0])
        got = []
        hold_until = time.monotonic() + 6.0  # 6 x revoke_timeout, 3 x the session timeout
        while time.monotonic() < hold_until:
            got += b.fetch(2, 0.5)
        assert got == [], "a record was delivered to the joining member while the other one ran record 0"
        a.ack(held[0])
        deadline = time.monotonic() + 20.0
        got_a: list = []
        while not (got or got_a) and time.monotonic() < deadline:  # the group's one partition goes to either
            got += b.fetch(2, 0.2)
            got_a += a.fetch(2, 0.2)
        got += b.fetch(2, 1.0)
        got_a += a.fetch(2, 0.1)
        assert [d.id for d in got + got_a] == [msgs[1].id], "after the ack only the prefetched record comes again"
        b.ack_many(got)
        a.ack_many(got_a)
    finally:
        a.close()
        b.close()


class _Seen(logging.Handler):
    """Sets ``event`` when a record whose message contains ``text`` is logged."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.DEBUG)
        self.text, self.event = text, threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


@pytest.mark.serial
@pytest.mark.parametrize("when", ["revoke-wait", "join"])
@pytest.mark.parametrize("broker_name", ["kafka", "confluent-kafka"])
def test_member_closed_during_a_rebalance_does_not_stall_the_other(broker_name: str, when: str) -> None:
    """Issue #15: member ``a`` holds two records (one running) when ``b`` joins, and ``a`` is closed while the
    group rebalances: during its revoke's wait for the running record (``revoke-wait``), or 0.1 s after ``b``
    started joining, before ``a`` may have heard of the rebalance (``join``). tansu 0.6.0 keeps a member that
    sends LeaveGroup while the group is forming as the group's leader, so ``b`` waited for the gone leader's
    assignment forever (no partition in 40 s, nor in 240 s). Closed without a LeaveGroup, ``a`` is dropped
    when its session (2 s) times out, and ``b`` gets both records (none was acked, so both come again)."""
    q = f"sem_{uuid.uuid4().hex[:8]}"
    a, b = _any_broker(broker_name, q), _any_broker(broker_name, q)
    seen = _Seen("waiting up to")  # _wait_running: a's revoke waits for the running record
    a.log.addHandler(seen)
    level = a.log.level
    a.log.setLevel(logging.INFO)
    try:
        msgs = _msgs(2)
        a.publish_many(msgs)
        held = _fetch(a, 2)
        assert [d.id for d in held] == [m.id for m in msgs]
        a.started(held[0])
        got = b.fetch(2, 0.1)  # b's consumer starts and joins: the group rebalances
        if when == "revoke-wait":
            assert seen.event.wait(20), "a's revoke never waited for its running record: no rebalance happened"
        t0 = time.monotonic()
        a.close()
        deadline = t0 + 20.0  # session timeout 2 s + tansu's join pauses (~3 s each); the stall was unbounded
        while len(got) < 2 and time.monotonic() < deadline:
            got += b.fetch(2, 0.2)
        assert sorted(d.id for d in got) == sorted(m.id for m in msgs), \
            f"the remaining member got {len(got)} of 2 records within 20 s of the other one's close mid-rebalance"
        b.ack_many(got)
    finally:
        a.log.removeHandler(seen)
        a.log.setLevel(level)
        a.close()
        b.close()


@pytest.mark.parametrize("broker_name", ["kafka", "confluent-kafka"])
def test_count_reads_the_control_topic_again_only_when_it_moved(broker_name: str) -> None:
    """count() subtracts the ranges purges skipped, read from the tail of ``<topic>.bk-control``. A dashboard
    polls count(): while nothing was purged it must not look at the control topic beyond one offsets lookup,
    and after a purge it reads the tail once, then again only when a new control record came."""
    q = f"sem_{uuid.uuid4().hex[:8]}"
    b = _any_broker(broker_name, q)
    reads: list[str] = []  # the inspection calls on the control topic
    i_positions, i_read = b._i_positions, b._i_read

    def counting_positions(topic: str, group: str):  # type: ignore[no-untyped-def]
        if topic == b.control_topic:
            reads.append("positions")
        return i_positions(topic, group)

    def counting_read(topic: str, start, end, limit: int):  # type: ignore[no-untyped-def]
        if topic == b.control_topic:
            reads.append("read")
        return i_read(topic, start, end, limit)

    b._i_positions, b._i_read = counting_positions, counting_read
    try:
        b.publish_many(_msgs(6))
        for _ in range(3):
            assert b.count() == 6
        assert reads == [], f"count() looked into an empty control topic: {reads}"
        held = _fetch(b, 2)
        assert len(held) == 2
        assert b.purge() == 4  # the member's reply, with the skipped range [2, 6), goes to the control topic
        late = _msgs(3)
        b.publish_many(late)  # lag again: count() must look up the purged ranges
        assert wait_until(lambda: b.count() == 3, 10), b.count()
        n = len(reads)
        assert n > 0, "count() never read the purged ranges"
        for _ in range(3):
            assert b.count() == 3
        assert len(reads) == n, f"count() read the unchanged control topic again: {reads}"
        b._p_send(b.control_topic, [(b'{"kind": "other"}', [])])  # the control topic moved
        assert b.count() == 3
        assert len(reads) > n, "count() did not read the control topic after it moved"
        b.ack_many(held + _fetch(b, 3))
    finally:
        b.close()
