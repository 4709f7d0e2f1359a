"""Entry point of boostkernel-mongodb. Imports nothing heavy: pymongo is imported when the broker is used."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_brokers(registry: Registry) -> None:
    registry.add_broker("mongodb", "boostkernel_mongodb.broker:MongoBroker", schemes=("mongodb", "mongodb+srv"),
                        summary="MongoDB collection: find_one_and_update claims, heartbeats, reaper, priority, "
                                "native delay, DLQ (at-least-once; not tested against a server here)")
