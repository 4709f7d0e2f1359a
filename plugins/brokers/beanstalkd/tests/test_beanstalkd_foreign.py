"""Jobs put by a foreign producer (plain greenstalk, no boostkernel frame): a JSON object runs as kwargs,
bytes that are not JSON are buried with the reason, and the worker keeps consuming."""

from __future__ import annotations

import threading
import uuid

import greenstalk
import pytest

from boostkernel import boost
from boostkernel.testing.helpers import service_url, wait_until

pytestmark = pytest.mark.service("beanstalkd")


def test_foreign_jobs_run_or_are_buried_with_the_reason() -> None:
    url = service_url("beanstalkd")
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    queue = f"foreign_{uuid.uuid4().hex[:8]}"
    seen: list[int] = []
    lock = threading.Lock()

    @boost(queue, broker="beanstalkd", broker_url=url, workers=2, broker_options={"ttr": 5})
    def add(x: int) -> None:
        with lock:
            seen.append(x)

    c: greenstalk.Client[bytes] = greenstalk.Client((host, int(port)), encoding=None, use=add.broker.tube)
    c.put(b'{"x": 7}')
    bad = c.put(b"\xff not json")
    c.close()
    add.consume()
    try:
        assert wait_until(lambda: seen == [7], 20), seen
        assert wait_until(lambda: len(add.dead_letters()) == 1, 20)
        (dead,) = add.dead_letters()
        assert dead.id == f"beanstalkd-{bad}"
        assert dead.body == b"\xff not json"
        assert dead.reason, "the dead letter must say why"
    finally:
        add.stop(10)
        add.broker.purge_dead_letters()
        add.broker.close()
