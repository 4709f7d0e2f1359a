"""Scheduled tasks for boostkernel (cron / interval / date), persistent, each tick published once.

    add.schedule(cron="*/5 * * * *", kwargs={"x": 1, "y": 2}, id="every-5-min")

then run ``boostkernel scheduler MODULE`` (as many copies as you like). See :mod:`boostkernel_schedule.api`.
"""

from __future__ import annotations

from typing import Any


def start_scheduler(boosters: Any, **options: Any) -> Any:
    """Start a background :class:`~boostkernel_schedule.api.Scheduler` for ``boosters``; return it."""
    from .api import Scheduler

    s = Scheduler(list(boosters), **options)
    s.start()
    return s


__all__ = ["start_scheduler"]
