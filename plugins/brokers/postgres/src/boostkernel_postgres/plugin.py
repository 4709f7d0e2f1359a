"""Entry point of boostkernel-postgres. Imports nothing heavy: psycopg is imported when a broker is used."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_brokers(registry: Registry) -> None:
    registry.add_broker("postgres", "boostkernel_postgres.broker:PostgresBroker", schemes=("postgresql", "postgres"),
                        summary="PostgreSQL tables: SKIP LOCKED claims, LISTEN/NOTIFY wake-ups, heartbeats, reaper, "
                                "priority, native delay, DLQ (at-least-once)")


@hookimpl
def register_stores(registry: Registry) -> None:
    registry.add_store("postgres", "boostkernel_postgres.store:PostgresStore", schemes=("postgresql", "postgres"),
                       summary="Results (LISTEN/NOTIFY wait), counters, flags, locks in PostgreSQL (cross-host)")
