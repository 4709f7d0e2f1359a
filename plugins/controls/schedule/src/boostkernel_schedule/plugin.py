"""Entry point of boostkernel-schedule. Imports nothing heavy: APScheduler is imported when a scheduler
starts or a schedule is added (``Booster.schedule()`` calls :func:`add_schedule` here)."""

from __future__ import annotations

from typing import Any

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_controls(registry: Registry) -> None:
    registry.add_command("scheduler", factory="boostkernel_schedule.cli:scheduler_command",
                         summary="boostkernel scheduler MODULE: publish the schedules of a module's boosters "
                                 "(cron/interval/date; each tick once across schedulers)")


@hookimpl
def register_commands(cli: Any) -> None:
    from .cli import scheduler_command

    cli.add_command(scheduler_command, "scheduler")


def add_schedule(booster: Any, **spec: Any) -> str:
    from .api import add_schedule as add

    return add(booster, **spec)


def remove_schedule(booster: Any, schedule_id: str) -> bool:
    from .api import remove_schedule as remove

    return remove(booster, schedule_id)


def list_schedules(booster: Any) -> list[dict[str, Any]]:
    from .api import list_schedules as lst

    return lst(booster)
