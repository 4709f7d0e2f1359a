"""``worker_started`` receives the worker (pid, boosters, queues) and ``worker_stopping`` is called on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

from boostkernel.testing.helpers import wait_until

MODULE = '''
import json, types
from boostkernel import boost, hookimpl
from boostkernel.plugins import register_plugin

OUT = {out!r}

def _write(event, worker):
    with open(OUT, "a") as fh:
        fh.write(json.dumps({{"event": event, "pid": worker.pid, "queues": worker.queues,
                             "type": type(worker).__name__}}) + "\\n")

observer = types.ModuleType("observer")
observer.worker_started = hookimpl(lambda worker: _write("started", worker))
observer.worker_stopping = hookimpl(lambda worker: _write("stopping", worker))
register_plugin(observer, "observer")

@boost({queue!r}, broker="sqlite", data_dir={data!r})
def job() -> None:
    pass
'''


def test_worker_hooks_get_the_worker_and_stopping_is_called(tmp_path: Path) -> None:
    queue = f"wh_{uuid.uuid4().hex[:8]}"
    out = tmp_path / "events.jsonl"
    mod = tmp_path / "hooked_tasks.py"
    mod.write_text(textwrap.dedent(MODULE.format(out=str(out), queue=queue, data=str(tmp_path))))
    log = tmp_path / "worker.log"
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-c", "from boostkernel.cli import main; main()", "worker", str(mod)],
                                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err)
    try:
        assert wait_until(lambda: out.exists() and "started" in out.read_text(), timeout=60), log.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["event"] for e in events] == ["started", "stopping"]
    assert all(e["pid"] == proc.pid and e["queues"] == [queue] and e["type"] == "Worker" for e in events)
