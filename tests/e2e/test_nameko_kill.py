"""nameko's delivery guarantee, measured: kill -9 the worker while a task runs; the next worker runs it again.

The worker is ``boostkernel worker MODULE --concurrency eventlet`` (nameko's services need the eventlet
patch; the flag prepares the process before the module is imported). nameko acks an event after its
handler returned, so RabbitMQ requeues the event of a killed worker: at-least-once.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from boostkernel.testing import wait_until
from boostkernel.testing.chaos import WorkerProcess
from boostkernel.testing.helpers import import_module_file, service_url

pytestmark = [pytest.mark.service("rabbitmq"), pytest.mark.timeout(180)]


def test_kill_9_during_a_task_redelivers_it(tmp_path: Path) -> None:
    queue = f"nk_kill_{uuid.uuid4().hex[:8]}"
    marks = tmp_path / "marks"
    marks.mkdir()
    tasks = import_module_file(tmp_path, "nk_kill_tasks", f"""
        import os, time
        from boostkernel import boost

        @boost({queue!r}, broker="nameko", broker_url={service_url("rabbitmq")!r}, data_dir={str(tmp_path)!r})
        def slow(i: int) -> None:
            open(os.path.join({str(marks)!r}, f"start-{{i}}-{{os.getpid()}}"), "w").close()
            time.sleep(3)
            open(os.path.join({str(marks)!r}, f"done-{{i}}-{{os.getpid()}}"), "w").close()
    """)
    worker = WorkerProcess("nk_kill_tasks", tmp_path, args=["--concurrency", "eventlet"])
    try:
        tasks.slow.push(7)
        worker.start()
        assert wait_until(lambda: any(p.name.startswith("start-7") for p in marks.iterdir()), 60), worker.log()[-3000:]
        worker.kill()
        first = {p.name for p in marks.iterdir()}
        assert not any(n.startswith("done-") for n in first), "the task finished before the kill"
        worker.start()
        assert wait_until(lambda: any(p.name.startswith("done-7") for p in marks.iterdir()), 60), worker.log()[-3000:]
        starts = [p.name for p in marks.iterdir() if p.name.startswith("start-7")]
        assert len(starts) == 2, starts
    finally:
        worker.terminate()
        tasks.slow.purge()
