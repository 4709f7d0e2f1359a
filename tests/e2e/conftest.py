"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from boostkernel.testing.helpers import service_url

#: the queues of examples/frameworks/tasks.py
EXAMPLE_QUEUES = ("fw_example_add", "fw_example_flaky", "fw_example_fail", "fw_example_slow")


@pytest.fixture
def drop_example_rabbitmq_queues() -> Callable[[], None]:
    """A function that deletes the queues of examples/frameworks on the shared RabbitMQ (with celery's and
    dramatiq's ``.DQ``/``.XQ`` companions): celery and dramatiq declare the same queue names with different
    arguments, so a run on one after a run on the other starts clean only after this."""

    def drop() -> None:
        import pika

        conn = pika.BlockingConnection(pika.URLParameters(service_url("rabbitmq")))
        try:
            for q in EXAMPLE_QUEUES:
                for name in (q, f"{q}.DQ", f"{q}.XQ"):
                    ch = conn.channel()
                    ch.queue_delete(name)
                    ch.close()
        finally:
            conn.close()

    return drop
