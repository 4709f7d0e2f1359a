"""nameko needs an eventlet-patched process to run its services: the FrameworkContract (TestNamekoRabbitMQ in
contract_patched.py) runs in a child pytest process that patches first; this process checks what works
without patching."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from boostkernel import ConfigError, boost
from boostkernel.booster import REGISTRY
from boostkernel.testing import wait_until
from boostkernel.testing.helpers import service_url

HERE = Path(__file__).resolve().parent
PATCH = ("import warnings; warnings.simplefilter('ignore')\n"
         "import eventlet; eventlet.monkey_patch()\n"
         "warnings.resetwarnings()\n")


@pytest.mark.service("rabbitmq")
def test_contract_in_an_eventlet_patched_process() -> None:
    code = (f"{PATCH}import sys, pytest\n"
            f"sys.exit(pytest.main([{str(HERE / 'contract_patched.py')!r}, '-q', '-p', 'no:cacheprovider', "
            f"'-o', 'python_files=contract_*.py']))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=HERE.parents[3], env=dict(os.environ),
                          capture_output=True, text=True, timeout=240)
    tail = proc.stdout[-4000:]
    assert proc.returncode == 0, tail + proc.stderr[-2000:]
    m = re.search(r"(\d+) passed", tail)
    assert m and int(m.group(1)) >= 14, tail


@pytest.mark.service("rabbitmq")
def test_push_works_unpatched_and_consume_says_how_to_patch(tmp_path: Path) -> None:
    queue = f"nk_unpatched_{uuid.uuid4().hex[:8]}"

    @boost(queue, broker="nameko", broker_url=service_url("rabbitmq"), data_dir=str(tmp_path))
    def task(i: int) -> int:
        return i

    try:
        task.push(1)  # a producer (a web app …) needs no patching; the queue exists before any worker
        task.push(2)
        assert wait_until(lambda: task.count() == 2, 5), task.count()
        with pytest.raises(ConfigError, match="--concurrency eventlet"):
            task.consume()
        assert task.purge() == 2
    finally:
        REGISTRY.pop(queue, None)


def test_bad_parameters_fail_at_decoration() -> None:
    with pytest.raises(ConfigError, match="timeout"):
        boost(f"nk_bad_{uuid.uuid4().hex[:6]}", broker="nameko", timeout=5)(lambda: None)
    with pytest.raises(ConfigError, match="amqp"):
        boost(f"nk_bad_{uuid.uuid4().hex[:6]}", broker="nameko", broker_url="redis://127.0.0.1:6379/0")(lambda: None)
