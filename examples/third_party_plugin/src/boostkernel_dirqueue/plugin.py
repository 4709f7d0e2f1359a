"""Entry point: registers the broker lazily (the class is imported only when a booster uses it)."""

from __future__ import annotations

from typing import Any

from boostkernel import hookimpl


@hookimpl
def register_brokers(registry: Any) -> None:
    registry.add_broker("dirqueue", "boostkernel_dirqueue.broker:DirQueueBroker", schemes=("dirqueue",),
                        summary="Example: one file per message in a directory (atomic renames)")
