"""Entry point of boostkernel-sqlite (imports nothing heavy)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_brokers(registry: Registry) -> None:
    registry.add_broker("sqlite", "boostkernel_sqlite.broker:SqliteBroker", schemes=("sqlite",),
                        summary="Embedded default: durable queues in a SQLite WAL file, leases + heartbeats")


@hookimpl
def register_stores(registry: Registry) -> None:
    registry.add_store("sqlite", "boostkernel_sqlite.store:SqliteStore", schemes=("sqlite",),
                       summary="Results and coordination state in a SQLite file (shared by processes on one host)")
