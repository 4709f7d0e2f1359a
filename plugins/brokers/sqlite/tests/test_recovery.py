"""Crash recovery of the SQLite broker: leases, heartbeats, the reaper and the crash-loop limit."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from boostkernel_sqlite.broker import SqliteBroker

from boostkernel.broker import Outgoing
from boostkernel.message import Envelope, decode

FAST = {"lease": 1.0, "heartbeat_interval": 0.2, "reap_interval": 0.2}


# A child that fetches and dies with messages in flight: no ack, no close. With a third argument it first
# starts running the delivery with that id (as the kernel does just before calling the function).
_CHILD = """
import os, sys
from boostkernel_sqlite.broker import SqliteBroker
b = SqliteBroker(sys.argv[2], sys.argv[1], lease=1.0, heartbeat_interval=0.2, reap_interval=0.2)
got = []
while not got:
    got = b.fetch(10, 1.0)
for d in got:
    if d.id in sys.argv[3:]:
        b.started(d)
os._exit(137)
"""


def _msg(i: int) -> Outgoing:
    env = Envelope("q", [i])
    return Outgoing(env.id, env.encode())


def _crash_once(url: str, queue: str, *running: str) -> None:
    p = subprocess.run([sys.executable, "-c", _CHILD, url, queue, *running], timeout=60)
    assert p.returncode == 137


def test_dead_workers_messages_come_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/q.db"
    b = SqliteBroker("rq", url, **FAST)
    msgs = [_msg(i) for i in range(5)]
    b.publish_many(msgs)
    _crash_once(url, "rq")
    assert b.count() == 0 and b.in_flight() == 5
    t0 = time.monotonic()
    got = []
    while len(got) < 5 and time.monotonic() - t0 < 10:
        got += b.fetch(5, 0.5)
    assert sorted(d.id for d in got) == sorted(m.id for m in msgs)
    assert all(d.delivery_count == 2 for d in got)
    b.ack_many(got)
    b.close()
    assert SqliteBroker("rq", url).in_flight() == 0


def test_long_task_of_live_worker_is_not_redelivered(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/q.db"
    worker = SqliteBroker("lq", url, **FAST)
    other = SqliteBroker("lq", url, **FAST)
    worker.publish(_msg(1))
    d = worker.fetch(1, 2)[0]
    time.sleep(3.0)  # three leases long: the heartbeat keeps it ours
    assert other.fetch(1, 0.5) == []
    worker.ack(d)
    worker.close()
    other.close()


def test_crash_loop_goes_to_dead_letters(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/q.db"
    b = SqliteBroker("pq", url, max_deliveries=3, **FAST)
    b.max_crashes = 3
    poison = _msg(0)
    bystanders = [_msg(i) for i in range(1, 6)]
    b.publish_many([poison, *bystanders])
    for _ in range(3):
        _crash_once(url, "pq", poison.id)  # it holds all six, but only the poison was running
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and b.in_flight():
            b.reap()
            time.sleep(0.2)
    dead = b.dead_letters()
    assert [r.id for r in dead] == [poison.id], "only the message that was running is charged"
    assert dead[0].reason.startswith("crash-loop: the worker died 3 time(s) while running it")
    assert b.count() == len(bystanders)
    crashes = b.db.read("SELECT crashes FROM bk_messages WHERE queue='pq'")
    assert [r[0] for r in crashes] == [0] * len(bystanders)
    b.close()


def test_prefetched_only_messages_go_back_uncharged(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/q.db"
    b = SqliteBroker("uq", url, max_deliveries=1, **FAST)
    msgs = [_msg(i) for i in range(4)]
    b.publish_many(msgs)
    _crash_once(url, "uq")  # fetched four, ran none
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and b.in_flight():
        b.reap()
        time.sleep(0.2)
    assert b.dead_letters() == [] and b.count() == 4
    assert not list((tmp_path / "q.db.running").glob("*.running")), "the dead worker's journal is removed"
    b.close()


def test_a_row_whose_body_is_not_bytes_goes_to_the_dead_letters(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/q.db"
    b = SqliteBroker("wq", url, **FAST)
    good = _msg(1)
    b.publish(good)
    b.db.write(lambda c: c.execute("INSERT INTO bk_messages (queue, id, body) VALUES ('wq', 'int-body', 42)"))
    text = Envelope("wq", [2])
    b.db.write(lambda c: c.execute("INSERT INTO bk_messages (queue, id, body) VALUES ('wq', ?, ?)",
                                   (text.id, text.encode().decode())))
    got = b.fetch(10, 1.0)
    assert [d.id for d in got] == [good.id, text.id]
    assert all(isinstance(d.body, bytes) for d in got)
    assert decode(got[1].body, "wq").args == [2]
    b.ack_many(got)
    b.flush_acks()
    dead = b.dead_letters()
    assert [r.id for r in dead] == ["int-body"]
    assert dead[0].reason.startswith("malformed row: its body is int")
    assert b.count() == 0 and b.in_flight() == 0
    b.close()
