"""In a process that was not monkey-patched, the gevent mode refuses to start and says exactly what to do."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from boostkernel_gevent.executor import GeventExecutor
from gevent import monkey

from boostkernel.errors import ConfigError

pytestmark = pytest.mark.skipif(monkey.is_module_patched("socket"), reason="runs in the unpatched pytest process")


def test_unpatched_process_fails_with_the_fix() -> None:
    with pytest.raises(ConfigError) as info:
        GeventExecutor(10)
    msg = str(info.value)
    assert "boostkernel worker" in msg
    assert "from gevent import monkey" in msg and "monkey.patch_all()" in msg


def test_consume_in_an_unpatched_process_fails_at_consume_time(unique_queue: str) -> None:
    from boostkernel import boost

    @boost(unique_queue, broker="memory", concurrency="gevent", workers=5)
    def task() -> None:
        pass

    task.push()  # publishing needs no patching: a producer (a web app …) stays as it is
    with pytest.raises(ConfigError, match="monkey.patch_all"):
        task.consume()


def test_prepare_process_patches_everything_the_mode_needs() -> None:
    code = ("from boostkernel_gevent.executor import GeventExecutor\n"
            "assert GeventExecutor.missing_patches(), 'fresh interpreter should start unpatched'\n"
            "GeventExecutor.prepare_process(); GeventExecutor.prepare_process()\n"
            "assert not GeventExecutor.missing_patches(), GeventExecutor.missing_patches()\n"
            "GeventExecutor(3).shutdown(); print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ})
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
