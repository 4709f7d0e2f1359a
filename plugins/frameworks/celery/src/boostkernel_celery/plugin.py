"""Entry point of boostkernel-celery (imports nothing heavy: celery is imported by the broker module)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_brokers(registry: Registry) -> None:
    registry.add_broker("celery", "boostkernel_celery.broker:CeleryBroker",
                        summary="celery as a whole framework: its own publishing, worker, retries and scheduling")
