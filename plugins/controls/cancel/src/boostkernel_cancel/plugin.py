"""Entry point of boostkernel-cancel: the control and the ``boostkernel revoke`` command."""

from __future__ import annotations

from typing import Any

from boostkernel import hookimpl
from boostkernel.control import ORDER_CANCEL
from boostkernel.plugins import Registry


@hookimpl
def register_controls(registry: Registry) -> None:
    registry.add_control("cancel", "boostkernel_cancel.control:CancelControl", params=("cancellable",),
                         order=ORDER_CANCEL,
                         summary="Remote cancel by task id: revoked pending tasks never run, running ones stop")


@hookimpl
def register_commands(cli: Any) -> None:
    from .cli import add_commands

    add_commands(cli)
