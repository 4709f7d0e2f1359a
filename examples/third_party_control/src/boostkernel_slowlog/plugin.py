"""Entry point: registers the control with its options class (imported when listing plugins: keep it light)."""

from __future__ import annotations

from boostkernel import Registry, hookimpl

from .options import ORDER, SlowLogOptions


@hookimpl
def register_controls(registry: Registry) -> None:
    registry.add_control("slowlog", "boostkernel_slowlog.control:SlowLog", options=SlowLogOptions, order=ORDER,
                         summary="Record tasks slower than slow_after seconds")
    registry.add_booster_method("slow_tasks", "boostkernel_slowlog.control:slow_tasks",
                                summary="booster.slow_tasks(): ids of the slow tasks recorded in this process")
