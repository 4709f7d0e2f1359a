"""Entry point of boostkernel-nameko (imports nothing heavy: nameko and eventlet are imported lazily)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_brokers(registry: Registry) -> None:
    registry.add_broker("nameko", "boostkernel_nameko.broker:NamekoBroker",
                        summary="nameko as the broker: tasks run through nameko events and RPC on RabbitMQ "
                                "(the worker needs an eventlet-patched process)")
