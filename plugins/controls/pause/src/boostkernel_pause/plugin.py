"""Entry point of boostkernel-pause: the control and the ``boostkernel pause/resume`` commands."""

from __future__ import annotations

from typing import Any

from boostkernel import hookimpl
from boostkernel.plugins import Registry

from .options import ORDER, PauseOptions


@hookimpl
def register_controls(registry: Registry) -> None:
    registry.add_control("pause", "boostkernel_pause.control:PauseControl", options=PauseOptions, order=ORDER,
                         summary="Pause/resume consumption remotely (store flag polled every 0.5 s)")
    registry.add_booster_method("pause", "boostkernel_pause.api:pause")
    registry.add_booster_method("resume", "boostkernel_pause.api:resume")
    registry.add_booster_method("is_paused", "boostkernel_pause.api:is_paused")


@hookimpl
def register_commands(cli: Any) -> None:
    from .cli import add_commands

    add_commands(cli)
