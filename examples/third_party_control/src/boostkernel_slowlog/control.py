"""The control: an ``after`` hook comparing each run's duration with ``slow_after`` (or the message's own)."""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any

from boostkernel import Booster, Control, TaskContext

from .options import SlowLogOptions

log = logging.getLogger("boostkernel.slowlog")
_slow: dict[str, collections.deque[str]] = {}
_lock = threading.Lock()


def slow_tasks(booster: Booster[Any, Any]) -> list[str]:
    """Ids of the slow tasks of ``booster``'s queue recorded in this process (``booster.slow_tasks()``, or
    this function called directly where the type checker should see the types)."""
    with _lock:
        return list(_slow.get(booster.queue, ()))


class SlowLog(Control):
    name = "slowlog"

    def __init__(self, booster: Any) -> None:
        super().__init__(booster)
        opts: SlowLogOptions = self.options
        self.threshold = opts.slow_after
        self.keep = opts.slowlog_keep

    def after(self, ctx: TaskContext) -> None:
        threshold = ctx.envelope.options.get("slow_after", self.threshold)  # TaskOptions(overrides=...) wins
        took = (ctx.finished_at or ctx.started_at) - ctx.started_at
        if threshold is None or took <= threshold:
            return
        log.warning("task %s of %s took %.3fs (slow_after=%s)", ctx.task_id, ctx.queue, took, threshold)
        with _lock:
            _slow.setdefault(ctx.queue, collections.deque(maxlen=self.keep)).append(ctx.task_id)
