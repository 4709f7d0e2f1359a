"""Entry point of boostkernel-cancel: the control and the ``boostkernel revoke`` command."""

from __future__ import annotations

from typing import Any

from boostkernel import hookimpl
from boostkernel.plugins import Registry

from .options import ORDER, CancelOptions


@hookimpl
def register_controls(registry: Registry) -> None:
    registry.add_control("cancel", "boostkernel_cancel.control:CancelControl", options=CancelOptions, order=ORDER,
                         summary="Remote cancel by task id: revoked pending tasks never run, running ones stop")
    registry.add_booster_method("revoke", "boostkernel_cancel.api:revoke")


@hookimpl
def register_commands(cli: Any) -> None:
    from .cli import add_commands

    add_commands(cli)
