"""boostkernel.journal: a live consumer's journal is locked; only dead consumers' running keys are listed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from boostkernel import journal
from boostkernel.journal import (
    RunningJournal,
    charge,
    charges,
    dead_journals,
    discharge,
    forget_charges,
    journal_path,
    read_journal,
    running_journals,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")


def test_dead_journals_lists_only_dead_owners(tmp_path: Path) -> None:
    mine = RunningJournal(tmp_path, "me")
    mine.open()
    mine.started("m0")
    script = textwrap.dedent(f"""
        import sys, time
        from boostkernel.journal import RunningJournal
        j = RunningJournal({str(tmp_path)!r}, "other")
        j.open(); j.started("m1"); j.started("m2"); j.finished("m2")
        print("ready", flush=True)
        time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        assert dead_journals(tmp_path, exclude="me") == {}, "a live consumer's journal was listed as dead"
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    dead = dead_journals(tmp_path, exclude="me")
    assert dead == {journal_path(tmp_path, "other").name: {"m1"}}
    discharge(tmp_path, journal_path(tmp_path, "other").name, "m1")
    assert dead_journals(tmp_path, exclude="me") == {}
    mine.close()


def test_running_journals_lists_live_and_dead_owners_but_not_mine(tmp_path: Path) -> None:
    mine, other = RunningJournal(tmp_path, "me"), RunningJournal(tmp_path, "other")
    idle = RunningJournal(tmp_path, "idle")
    for j in (mine, other, idle):
        j.open()
    mine.started("m0")
    other.started("m1")
    other.started("m2")
    other.finished("m2")
    idle.started("m3")
    idle.finished("m3")
    assert running_journals(tmp_path, exclude="me") == {journal_path(tmp_path, "other").name: {"m1"}}
    assert set(running_journals(tmp_path)) == {journal_path(tmp_path, "me").name, journal_path(tmp_path, "other").name}
    assert running_journals(tmp_path / "missing") == {}
    for j in (mine, other, idle):
        j.close()


def test_rotation_keeps_the_lock(tmp_path: Path) -> None:
    j = RunningJournal(tmp_path, "rot", rotate_bytes=64)
    j.open()
    for i in range(50):
        j.started(f"k{i}")
        j.finished(f"k{i}")
    j.started("last")
    assert dead_journals(tmp_path) == {}, "a rotated journal lost its lock"
    j.close()


def test_crash_charges(tmp_path: Path) -> None:
    assert charges(tmp_path, "a/b") == 0
    assert charge(tmp_path, "a/b") == 1
    assert charge(tmp_path, "a/b") == 2
    assert charges(tmp_path, "a/b") == 2
    forget_charges(tmp_path, "a/b")
    assert charges(tmp_path, "a/b") == 0


def test_crash_charges_lookup_charges_each_death_once(tmp_path: Path) -> None:
    dead = journal_path(tmp_path, "gone")
    dead.write_text("m1\nm2\n-m2\n")  # a consumer that died (nobody holds its lock) running m1
    mine = RunningJournal(tmp_path, "me")
    mine.open()
    mine.started("m3")  # my own running keys are never charged to me
    cc = journal.CrashCharges(tmp_path, "me", every=0.0)
    assert cc.redelivered("m1", 2) == (1, None)
    assert cc.redelivered("m1", 2) == (1, None), "one death was charged twice"
    assert cc.redelivered("m2", 2) == (0, None), "a settled key was charged"
    assert cc.redelivered("m3", 2) == (0, None)
    assert charges(tmp_path, "m1") == 1
    with open(dead, "a") as f:
        f.write("m1\n")  # it died running m1 again: the second crash reaches max_crashes=2
    n, reason = cc.redelivered("m1", 2)
    assert n == 2 and reason is not None and reason.startswith("crash-loop: its worker died 2 time(s)")
    assert "(last: gone)" in reason
    mine.close()


def test_crash_charges_live_too_reads_the_journals_of_live_consumers(tmp_path: Path) -> None:
    """For servers that redeliver only after the holding connection closed (RabbitMQ, STOMP): a live
    consumer's journal counts too; the default counts only dead consumers' journals."""
    live = RunningJournal(tmp_path, "live")
    live.open()
    live.started("m1")
    assert journal.CrashCharges(tmp_path, "me", every=0.0).running_owner("m1") is None
    cc = journal.CrashCharges(tmp_path, "me", every=0.0, live_too=True)
    owner = cc.running_owner("m1")
    assert owner == journal.journal_path(tmp_path, "live").name
    cc.discharge(owner, "m1")
    assert cc.running_owner("m1") is None, "a discharged key is charged again"
    live.close()


def test_crash_charges_forget_and_sweep(tmp_path: Path) -> None:
    cc = journal.CrashCharges(tmp_path, "me")
    journal.charge(tmp_path, "m1")
    journal.charge(tmp_path, "m2")
    cc.forget("m1")
    assert (charges(tmp_path, "m1"), charges(tmp_path, "m2")) == (0, 1)
    old = journal.journal_path(tmp_path, "gone")
    old.write_text("m9\n")
    past = time.time() - 2 * 86400
    os.utime(old, (past, past))
    os.utime(tmp_path / "charged" / "m2", (past, past))
    cc.sweep()
    assert not old.exists() and charges(tmp_path, "m2") == 0


def test_crash_loop_reason_names_the_last_consumer() -> None:
    assert journal.crash_loop_reason(3) == "crash-loop: its worker died 3 time(s) while running it"
    assert journal.crash_loop_reason(3, "host:1:ab.running").endswith("(last: host:1:ab)")


def test_host_journal_dir_is_one_safe_folder_per_queue() -> None:
    d = journal.host_journal_dir("nats-a/b c")
    assert os.path.basename(d) == "nats-a_b_c" and os.path.basename(os.path.dirname(d)) == "boostkernel-running"
    assert journal.consumer_id() != journal.consumer_id()


def test_rotation_keeps_the_running_keys_and_drops_the_settled(tmp_path: Path) -> None:
    j = RunningJournal(tmp_path, "rot", rotate_bytes=64)
    j.open()
    j.started("kept-1")
    for i in range(200):  # many rotations of a 64-byte mapping
        j.started(f"k{i}")
        if i != 7:
            j.finished(f"k{i}")
    j.started("x" * 500)  # a key larger than the mapping grows it
    assert read_journal(tmp_path, "rot") == {"kept-1", "k7", "x" * 500}
    j.finished("k7")
    assert read_journal(tmp_path, "rot") == {"kept-1", "x" * 500}
    assert not list(tmp_path.glob("*.tmp")), "a rotation left its temporary file"
    j.close()
    assert read_journal(tmp_path, "rot") is None, "a graceful close removes the journal"


def test_started_and_finished_from_many_threads(tmp_path: Path) -> None:
    import threading

    j = RunningJournal(tmp_path, "busy", rotate_bytes=4096)
    j.open()

    def work(t: int) -> None:
        for i in range(2000):
            j.started(f"t{t}-{i}")
            if i % 100:
                j.finished(f"t{t}-{i}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert read_journal(tmp_path, "busy") == {f"t{t}-{i}" for t in range(8) for i in range(0, 2000, 100)}
    j.close()
