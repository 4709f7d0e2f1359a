"""Fast at the defaults (issue #12): pipelined one-by-one publishing with tracked confirms, and a
``basic_qos`` window large enough for the default pool. Speeds are checked by benchmarks/bench_rabbitmq.py;
these tests check the guarantees that come with the speed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from boostkernel_rabbitmq.broker import MIN_DEFAULT_WINDOW, RabbitmqBroker

from boostkernel import boost
from boostkernel.booster import REGISTRY
from boostkernel.config import build_params
from boostkernel.errors import MessageRejected
from boostkernel.testing.helpers import service_url

pytestmark = pytest.mark.service("rabbitmq")


@pytest.fixture
def queue() -> Iterator[str]:
    name = f"t_rmqd_{uuid.uuid4().hex[:10]}"
    yield name
    REGISTRY.pop(name, None)
    b = RabbitmqBroker(name, service_url("rabbitmq"))
    b.delete_queues()
    b.close()


def test_default_window_covers_running_and_prefetched_tasks(queue: str) -> None:
    url = service_url("rabbitmq")
    b = RabbitmqBroker(queue, url, build_params(queue, {"broker": url}))
    assert b.prefetch >= MIN_DEFAULT_WINDOW  # threads x16 + 32 prefetched: a window of 32 halved the speed
    big = RabbitmqBroker(queue, url, build_params(queue, {"broker": url, "workers": 200}))
    assert big.prefetch >= 200 + 400
    explicit = RabbitmqBroker(queue, url, build_params(queue, {"broker": url, "prefetch": 7}))
    assert explicit.prefetch == 7  # an explicit prefetch is the window, as documented
    assert RabbitmqBroker(queue, url, build_params(queue, {"broker": url}), prefetch=3).prefetch == 3


def test_push_is_pipelined_and_count_sees_every_push(queue: str) -> None:
    @boost(queue, broker=service_url("rabbitmq"))
    def f(i: int) -> None: ...

    for i in range(500):
        f.push(i)
    assert f.count() == 500  # count() waits for this process's own confirms first
    assert f.broker._window.outstanding == 0


def test_an_unconfirmed_publish_raises(queue: str) -> None:
    @boost(queue, broker=service_url("rabbitmq"))
    def f(i: int) -> None: ...

    f.push(0)
    f.broker.delete_queues()  # the publisher link declared the queue once: now nothing routes there
    r = f.push(1)             # returns at once: the confirm is still on its way
    with pytest.raises(MessageRejected, match=rf"did not confirm 1 earlier.*{r.task_id}.*NO_ROUTE"):
        f.broker.flush()
    f.broker.flush()  # reported once


def test_a_refused_publish_makes_the_next_push_raise(queue: str) -> None:
    @boost(queue, broker=service_url("rabbitmq"))
    def f(i: int) -> None: ...

    f.push(0)
    f.broker.delete_queues()
    f.push(1)
    assert f.broker._window.wait_empty(10)
    with pytest.raises(MessageRejected, match="NO_ROUTE"):
        f.push(2)


def test_confirm_each_waits_for_every_confirm(queue: str) -> None:
    @boost(queue, broker=service_url("rabbitmq"), broker_options={"confirm_each": True})
    def f(i: int) -> None: ...

    f.push(0)
    f.broker.delete_queues()
    with pytest.raises(MessageRejected, match="NO_ROUTE"):
        f.push(1)  # at once, not later


_EXITING = """
import sys
from boostkernel import boost

@boost(sys.argv[1], broker=sys.argv[2])
def f(i: int) -> None: ...

for i in range(int(sys.argv[3])):
    f.push(i)
# no flush, no close: a normal exit must not lose the messages whose confirms are still on their way
"""


def test_a_normally_exiting_process_flushes(queue: str, tmp_path: Path) -> None:
    script = tmp_path / "pusher.py"
    script.write_text(textwrap.dedent(_EXITING))
    url = service_url("rabbitmq")
    n = 3000
    subprocess.run([sys.executable, str(script), queue, url, str(n)], check=True, timeout=120,
                   env={**os.environ, "BOOSTKERNEL_DATA_DIR": str(tmp_path)})
    b = RabbitmqBroker(queue, url)
    try:
        assert b.count() == n
    finally:
        b.close()
