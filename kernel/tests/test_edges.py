"""Regressions of issue #12 "correct at the edges": honest types, early validation, clean shutdown."""

from __future__ import annotations

import logging
import sys
import threading
import uuid
from types import ModuleType

import pytest

from boostkernel import boost
from boostkernel.booster import REGISTRY
from boostkernel.testing import wait_until


def q() -> str:
    return f"edge_{uuid.uuid4().hex[:10]}"


# --- boosters_of(module object) --------------------------------------------------------------------------
def test_boosters_of_accepts_a_module_object() -> None:
    from boostkernel.worker import boosters_of

    name = f"edge_mod_{uuid.uuid4().hex[:8]}"
    mod = ModuleType(name)
    sys.modules[name] = mod
    qa, qb = q(), q()
    try:
        code = (f"from boostkernel import boost\n"
                f"@boost({qa!r}, broker='memory', group='g1')\ndef a(x): return x\n"
                f"@boost({qb!r}, broker='memory', group='g2')\ndef b(x): return x\n")
        exec(compile(code, name, "exec"), mod.__dict__)  # noqa: S102 - a module built by the test
        assert [b.queue for b in boosters_of(mod, group="g1")] == [qa]
        assert {b.queue for b in boosters_of(mod)} == {qa, qb}
        assert [b.queue for b in boosters_of(name, group="g2")] == [qb]
    finally:
        sys.modules.pop(name, None)
        REGISTRY.pop(qa, None)
        REGISTRY.pop(qb, None)


# --- stop(timeout) shorter than the running tasks ------------------------------------------------------------
def test_stop_with_short_timeout_reports_abandoned_tasks_without_a_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()
    started: list[int] = []

    @boost(q(), broker="memory", workers=2)
    def slow(i: int) -> None:
        started.append(i)
        release.wait(10)

    crashes: list[BaseException] = []
    old_hook = threading.excepthook
    threading.excepthook = lambda a: crashes.append(a.exc_value)  # type: ignore[assignment,misc]
    try:
        results = [slow.push(i) for i in range(6)]
        slow.consume()
        assert wait_until(lambda: len(started) == 2, 10)
        with caplog.at_level(logging.WARNING, logger="boostkernel"):
            slow.stop(timeout=0.3)
        release.set()
        consumer = slow._consumer
        assert consumer is not None and consumer._thread is not None
        consumer._thread.join(10)  # the dispatch thread, blocked on a full pool, wakes up now and ends
        assert not consumer._thread.is_alive()
    finally:
        threading.excepthook = old_hook
        release.set()
        REGISTRY.pop(slow.queue, None)
    assert crashes == []
    text = caplog.text
    assert "2 task(s) still running, abandoned" in text
    running_ids = {results[i].task_id for i in started}
    assert all(tid in text for tid in running_ids)
    assert "Traceback" not in text and "executor is shut down" not in text
