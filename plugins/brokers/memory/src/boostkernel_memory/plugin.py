"""Entry point of boostkernel-memory: registers the in-process broker and store (imports nothing heavy)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_brokers(registry: Registry) -> None:
    registry.add_broker("memory", "boostkernel_memory.broker:MemoryBroker", schemes=("memory",),
                        summary="In-process queues: fastest, nothing leaves the process, nothing survives it")


@hookimpl
def register_stores(registry: Registry) -> None:
    registry.add_store("memory", "boostkernel_memory.store:MemoryStore", schemes=("memory",),
                       summary="In-process results and coordination state")
