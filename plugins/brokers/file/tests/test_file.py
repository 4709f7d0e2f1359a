"""What is particular to the file broker: foreign files, malformed bodies, the layout on disk, recovery
of a reaper that died half-way, and the wall-clock rule being optional."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from boostkernel_file.broker import FileBroker, _parse

from boostkernel import boost
from boostkernel.broker import Outgoing
from boostkernel.errors import ConfigError
from boostkernel.message import Envelope
from boostkernel.testing import wait_until

FAST = {"dead_after": 1.0, "heartbeat_interval": 0.2, "reap_interval": 0.2}


def _msg(i: int, priority: int = 0) -> Outgoing:
    env = Envelope("q", [i])
    return Outgoing(env.id, env.encode(), priority)


def test_layout_and_names(tmp_path: Path) -> None:
    b = FileBroker("lay", f"file://{tmp_path}", **FAST)
    m = _msg(1, priority=7)
    b.publish(m)
    (name,) = os.listdir(tmp_path / "lay" / "ready")
    pk, _, qid, d, c = _parse(name) or (0, 0, "", -1, -1)
    assert (pk, qid, d, c) == (4993, m.id, 0, 0)
    got = b.fetch(1, 1.0)
    assert os.listdir(tmp_path / "lay" / "ready") == []
    assert os.listdir(b.mine) == [got[0].tag] and got[0].delivery_count == 1
    b.ack(got[0])
    assert os.listdir(b.mine) == []
    b.close()
    assert os.listdir(tmp_path / "lay" / "inflight") == [] and os.listdir(tmp_path / "lay" / "consumers") == []


def test_foreign_files_are_messages_and_bad_ones_go_to_the_dlq(tmp_path: Path) -> None:
    """A file dropped into ready/ by another program (written elsewhere, then renamed in) is a message:
    a plain JSON object is the function's kwargs; undecodable bytes are dead-lettered with the reason."""
    seen: list[int] = []

    @boost("foreign_q", broker="file", broker_url=f"file://{tmp_path}", broker_options=FAST, workers=2)
    def add(x: int, y: int) -> None:
        seen.append(x + y)

    broker = add.make_broker()  # creates the queue's folders
    ready = tmp_path / "foreign_q" / "ready"
    (tmp_path / "drop.tmp").write_text(json.dumps({"x": 2, "y": 3}))
    os.rename(tmp_path / "drop.tmp", ready / "order-42.json")
    (tmp_path / "bad.tmp").write_bytes(b"\x00not json")
    os.rename(tmp_path / "bad.tmp", ready / "garbage")
    (ready / ".half-written").write_text("{")  # dot files are in progress: never taken
    add.consume()
    try:
        assert wait_until(lambda: seen == [5] and len(broker.dead_letters()) == 1, timeout=20)
        dead = broker.dead_letters()[0]
        assert dead.id == "garbage" and dead.body == b"\x00not json"
        assert "decode" in dead.reason.lower() or "json" in dead.reason.lower(), dead.reason
        assert os.listdir(ready) == [".half-written"]
        broker.close()
    finally:
        add.stop()


def test_an_orphaned_reaping_folder_is_adopted(tmp_path: Path) -> None:
    """A reaper that died while returning a dead consumer's messages leaves reaping/<owner>@<reaper>:
    the next live reaper finishes the job (messages back, uncharged when the journal shows none ran)."""
    b = FileBroker("orph", f"file://{tmp_path}", **FAST)
    b.publish_many([_msg(i) for i in range(3)])
    other = FileBroker("orph", f"file://{tmp_path}", **FAST)
    held = other.fetch(3, 2.0)
    assert len(held) == 3
    other._closed.set()  # stop its heartbeat thread without returning anything: "dead"
    assert other._hb_thread is not None
    other._hb_thread.join(5)
    os.rename(other.mine, b.reaping / f"{other.owner}@host:1:deadbeef")
    got: list = []
    deadline = time.monotonic() + 10
    while len(got) < 3 and time.monotonic() < deadline:
        got += b.fetch(3, 0.5)
    assert sorted(d.id for d in got) == sorted(d.id for d in held)
    assert all(d.delivery_count == 2 and d.crashes == 0 for d in got)
    b.ack_many(got)
    assert b.in_flight() == 0 and os.listdir(b.reaping) == []
    b.close()


def test_only_the_observed_rule_with_clock_skew_none(tmp_path: Path) -> None:
    """clock_skew=None (shared file systems with skewed clocks): a heartbeat file with an mtime far in the
    past is not dead until it has been seen unchanged for dead_after by the reaper's own clock."""
    b = FileBroker("skew", f"file://{tmp_path}", clock_skew=None, dead_after=1.0)
    hb = b.consumers / "elsewhere:1:abc"
    hb.touch()
    os.utime(hb, (1.0, 1.0))
    assert not b._is_dead("elsewhere:1:abc")
    assert wait_until(lambda: b._is_dead("elsewhere:1:abc"), timeout=5)
    with_wall = FileBroker("skew", f"file://{tmp_path}", dead_after=1.0)
    assert with_wall._is_dead("elsewhere:1:abc")
    b.close()
    with_wall.close()


def test_bad_configuration_fails_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="folder name"):
        FileBroker("a/b", f"file://{tmp_path}")
    with pytest.raises(ConfigError, match="file:///path"):
        FileBroker("ok", "sqlite:///x.db")
