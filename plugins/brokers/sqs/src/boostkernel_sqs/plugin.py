"""Entry point of boostkernel-sqs (imports nothing heavy: boto3 is imported by the broker module)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_brokers(registry: Registry) -> None:
    registry.add_broker(
        "sqs", "boostkernel_sqs.broker:SqsBroker", schemes=("sqs", "sqs+http", "sqs+https"),
        summary="Amazon SQS (boto3): long polling, visibility heartbeat, redrive DLQ, batched send/receive/delete",
    )
