"""Entry point of boostkernel-file (imports nothing heavy: watchdog is imported by the broker, lazily)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_brokers(registry: Registry) -> None:
    registry.add_broker("file", "boostkernel_file.broker:FileBroker", schemes=("file",),
                        summary="A directory is the queue: atomic renames, heartbeat files, DLQ directory")
