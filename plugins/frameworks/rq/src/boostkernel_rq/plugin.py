"""Entry point of boostkernel-rq (imports nothing heavy: rq is imported by the broker module)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_brokers(registry: Registry) -> None:
    registry.add_broker("rq", "boostkernel_rq.broker:RQBroker",
                        summary="rq as a whole framework: its own publishing, worker, retries and scheduling")
