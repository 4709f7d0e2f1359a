"""Example third-party control for boostkernel: record the tasks that ran longer than ``slow_after`` seconds."""

from __future__ import annotations

from .control import slow_tasks

__all__ = ["slow_tasks"]
