"""Entry point of boostkernel-schedule. Imports nothing heavy: APScheduler is imported when a scheduler
starts or a schedule is added. ``Booster.schedule()``, ``unschedule()`` and ``schedules()`` are the
functions below, added to every booster with ``registry.add_booster_method``."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from boostkernel import hookimpl
from boostkernel.plugins import Registry

if TYPE_CHECKING:
    from boostkernel import Booster, TaskOptions


@hookimpl
def register_controls(registry: Registry) -> None:
    registry.add_command("scheduler", factory="boostkernel_schedule.cli:scheduler_command",
                         summary="boostkernel scheduler MODULE: publish the schedules of a module's boosters "
                                 "(cron/interval/date; each tick once across schedulers)")
    registry.add_booster_method("schedule", "boostkernel_schedule.plugin:add_schedule",
                                summary="booster.schedule(cron=... | interval=... | at=..., args, kwargs)")
    registry.add_booster_method("unschedule", "boostkernel_schedule.plugin:unschedule")
    registry.add_booster_method("schedules", "boostkernel_schedule.plugin:list_schedules")


def add_schedule(booster: Booster[Any, Any], *, cron: str | None = None, interval: float | None = None,
                 at: datetime.datetime | float | None = None, args: Sequence[Any] = (),
                 kwargs: Mapping[str, Any] | None = None, id: str | None = None,  # noqa: A002
                 options: TaskOptions | None = None, timezone: str | None = None) -> str:
    """``Booster.schedule(cron=... | interval=... | at=..., args=, kwargs=, id=, options=, timezone=)``: publish
    this task on a schedule saved in the store (run the schedulers with ``boostkernel scheduler MODULE``);
    returns the schedule id."""
    from .api import add_schedule as add

    return add(booster, cron=cron, interval=interval, at=at, args=args, kwargs=kwargs, id=id, options=options,
               timezone=timezone)


def remove_schedule(booster: Booster[Any, Any], schedule_id: str) -> bool:
    """Remove the schedule ``schedule_id`` of ``booster``'s queue; True if it existed."""
    from .api import remove_schedule as remove

    return remove(booster, schedule_id)


def unschedule(booster: Booster[Any, Any], id: str) -> bool:  # noqa: A002 - Booster.unschedule(id)'s name
    """``Booster.unschedule(id)``: remove the schedule ``id``; True if it existed."""
    return remove_schedule(booster, id)


def list_schedules(booster: Booster[Any, Any]) -> list[dict[str, Any]]:
    """``Booster.schedules()``: the schedules saved for this queue."""
    from .api import list_schedules as lst

    return lst(booster)
