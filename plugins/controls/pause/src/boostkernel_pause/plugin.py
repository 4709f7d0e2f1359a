"""Entry point of boostkernel-pause: the control and the ``boostkernel pause/resume`` commands."""

from __future__ import annotations

from typing import Any

from boostkernel import hookimpl
from boostkernel.control import ORDER_PAUSE
from boostkernel.plugins import Registry


@hookimpl
def register_controls(registry: Registry) -> None:
    registry.add_control("pause", "boostkernel_pause.control:PauseControl", params=("pausable",), order=ORDER_PAUSE,
                         summary="Pause/resume consumption remotely (store flag polled every 0.5 s)")


@hookimpl
def register_commands(cli: Any) -> None:
    from .cli import add_commands

    add_commands(cli)
