"""Entry point of boostkernel-kombu (imports nothing heavy: kombu is imported by the broker module)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_brokers(registry: Registry) -> None:
    registry.add_broker(
        "kombu", "boostkernel_kombu.broker:KombuBroker",
        summary="Any kombu transport (amqp, redis, sqs, filesystem, memory ...): kombu+<transport>:// URLs",
    )


@hookimpl
def resolve_broker(url: str) -> str | None:
    """``kombu+redis://…``, ``kombu+amqp://…``, ``kombu+memory://`` … select the kombu broker."""
    return "kombu" if url.lower().startswith("kombu+") else None
