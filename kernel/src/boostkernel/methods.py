"""``PluginMethods``: the booster methods the in-tree control plugins add, as a type checker sees them.

A plugin adds methods to every booster with ``registry.add_booster_method`` (docs/hooks.md); at run time
``Booster.__getattr__`` finds them. For IDEs and mypy, :class:`~boostkernel.Booster` inherits this
class under ``TYPE_CHECKING`` only, so ``f.pause()``, ``f.revoke(task_id)`` and
``f.schedule(cron=...)`` complete and are checked like the kernel's own methods, while at run time the
class does not define them (a call whose plugin is not installed raises ``PluginNotInstalled`` with the
install command). kernel/tests/test_plugin_methods.py checks that these signatures match the plugins'
functions and that every in-tree booster method is declared here; like ``BoostKwargs`` for options, only
the in-tree plugins are listed. A third-party plugin types its methods by exporting its functions
(``slow_tasks(booster)``: see examples/third_party_control), which users may call directly.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from boostkernel_workflow.api import Signature

    from .params import TaskOptions


class PluginMethods:
    """Declarations only: never a base class at run time (``Booster.__getattr__`` serves these names)."""

    # --- boostkernel-pause (boostkernel_pause.api) ---
    def pause(self) -> None:
        """Pause consumption of this queue everywhere (workers with ``pausable=True`` stop fetching within ~1 s)."""
        raise NotImplementedError

    def resume(self) -> None:
        """Resume consumption paused by :meth:`pause`."""
        raise NotImplementedError

    def is_paused(self) -> bool:
        """True while the queue is paused."""
        raise NotImplementedError

    # --- boostkernel-cancel (boostkernel_cancel.api) ---
    def revoke(self, task_id: str, ttl: float = 7 * 24 * 3600.0) -> None:
        """Revoke ``task_id``: a pending task never runs, a running one is stopped (needs ``cancellable=True``)."""
        raise NotImplementedError

    # --- boostkernel-schedule (boostkernel_schedule.plugin) ---
    def schedule(self, *, cron: str | None = None, interval: float | None = None,
                 at: datetime.datetime | float | None = None, args: Sequence[Any] = (),
                 kwargs: Mapping[str, Any] | None = None, id: str | None = None,  # noqa: A002
                 options: TaskOptions | None = None, timezone: str | None = None) -> str:
        """Publish this task on a schedule (exactly one of ``cron``, ``interval`` s, ``at``); return its id.
        Run the schedulers with ``boostkernel scheduler MODULE``."""
        raise NotImplementedError

    def unschedule(self, id: str) -> bool:  # noqa: A002 - Booster.unschedule(id)'s name
        """Remove the schedule ``id``; True if it existed."""
        raise NotImplementedError

    def schedules(self) -> list[dict[str, Any]]:
        """The schedules saved for this queue."""
        raise NotImplementedError

    # --- boostkernel-workflow (boostkernel_workflow.api) ---
    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A signature of this call for ``chain`` / ``group`` / ``chord`` (boostkernel_workflow); in a chain the
        previous step's result comes first."""
        raise NotImplementedError

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable signature: in a chain it does not receive the previous step's result."""
        raise NotImplementedError
