"""rq at the default 16 workers: no job fails in rq's own finalization for want of a connection.

rq's worker holds a connection in BLMOVE and another in its command subscription, and finishes a job in
pipelines; a pool sized at "2 per worker" ran out ("Too many connections") while jobs were finalized, so jobs
landed in rq's failed registry although boostkernel had recorded them as successful.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from boostkernel import boost
from boostkernel.testing.helpers import service_url, wait_until

pytestmark = pytest.mark.service("redis")


@pytest.fixture
def booster(tmp_path: Any) -> Iterator[Any]:
    queue = f"rqconn_{uuid.uuid4().hex[:8]}"

    @boost(queue, broker="rq", broker_url=service_url("redis"), results=True, data_dir=str(tmp_path))
    def nap(i: int) -> int:
        time.sleep(0.02)
        return i

    yield nap
    nap.stop(10)
    nap.purge()


def test_default_workers_finish_every_job_in_rq_too(booster: Any) -> None:
    from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry

    assert booster.params.workers == 16  # the default this test is about
    results = booster.push_many([(i,) for i in range(400)])
    booster.consume()
    assert [r.get(30) for r in results] == list(range(400))
    q = booster.broker.rq_queue
    started = StartedJobRegistry(queue=q)
    assert wait_until(lambda: started.count == 0, 10), f"{started.count} job(s) still in rq's started registry"
    failed = FailedJobRegistry(queue=q)
    failures = []
    for job_id in failed.get_job_ids()[:3]:
        job = q.fetch_job(job_id)
        failures.append(job.latest_result().exc_string if job is not None and job.latest_result() else job_id)
    assert failed.count == 0, f"{failed.count} job(s) in rq's failed registry, e.g.:\n" + "\n".join(
        str(f)[-1500:] for f in failures)
    del FinishedJobRegistry  # result_ttl=0: rq keeps no finished jobs; the failed registry is what tells
