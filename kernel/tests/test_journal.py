"""boostkernel.journal: a live consumer's journal is locked; only dead consumers' running keys are listed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from boostkernel.journal import RunningJournal, charge, charges, dead_journals, discharge, forget_charges, journal_path

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
