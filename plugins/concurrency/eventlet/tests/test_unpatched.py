"""In a process that was not monkey-patched, the eventlet mode refuses to start and says exactly what to do."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest

with warnings.catch_warnings():  # eventlet warns on import that it is deprecated
    warnings.simplefilter("ignore")
    from eventlet import patcher

from boostkernel_eventlet.executor import EventletExecutor

from boostkernel.errors import ConfigError

pytestmark = pytest.mark.skipif(patcher.is_monkey_patched("socket"), reason="runs in the unpatched pytest process")


def test_unpatched_process_fails_with_the_fix() -> None:
    with pytest.raises(ConfigError) as info:
        EventletExecutor(10)
    msg = str(info.value)
    assert "boostkernel worker" in msg
    assert "import eventlet" in msg and "eventlet.monkey_patch()" in msg


def test_consume_in_an_unpatched_process_fails_at_consume_time(unique_queue: str) -> None:
    from boostkernel import boost

    @boost(unique_queue, broker="memory", concurrency="eventlet", workers=5)
    def task() -> None:
        pass

    task.push()  # publishing needs no patching: a producer (a web app …) stays as it is
    with pytest.raises(ConfigError, match=r"eventlet\.monkey_patch\(\)"):
        task.consume()


def test_prepare_process_patches_everything_the_mode_needs() -> None:
    code = ("from boostkernel_eventlet.executor import EventletExecutor\n"
            "assert EventletExecutor.missing_patches(), 'fresh interpreter should start unpatched'\n"
            "EventletExecutor.prepare_process(); EventletExecutor.prepare_process()\n"
            "assert not EventletExecutor.missing_patches(), EventletExecutor.missing_patches()\n"
            "EventletExecutor(3).shutdown(); print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ})
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
