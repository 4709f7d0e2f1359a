"""Controls that ship inside the kernel: the result/status record writer (``results=True``)."""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

from .control import ORDER_RESULTS, Control, TaskContext
from .errors import Skip
from .hookspecs import hookimpl
from .plugins import Registry


class ResultsControl(Control):
    """Writes each task's status record to the store: ``running`` when it starts, then the final record.

    A record says who ran it (host, pid, thread, worker id), when (published, started, finished), how
    long, with which arguments, on which attempt/delivery, and the result or the exception (type, message,
    traceback) or the reason it did not run (``expired``, ``duplicate``, ``revoked``, ``dead``).
    ``AsyncResult.record()`` / ``.status`` and ``boostkernel result QUEUE TASK_ID`` read it.
    """

    name = "results"
    needs_store = True

    def __init__(self, booster: Any) -> None:
        super().__init__(booster)
        self.store = booster.store
        self.ttl = booster.params.result_ttl
        fn = booster.fn
        self.function = f"{fn.__module__}.{fn.__qualname__}"
        self.host = socket.gethostname()

    def _base(self, ctx: TaskContext) -> dict[str, Any]:
        env, d = ctx.envelope, ctx.delivery
        rec: dict[str, Any] = {
            "task_id": env.id, "queue": env.queue, "function": self.function, "status": ctx.status,
            "attempt": env.attempt, "delivery_count": d.delivery_count if d is not None else 1,
            "worker": ctx.worker_id, "host": self.host, "pid": os.getpid(),
            "thread": threading.current_thread().name,
            "args": env.args, "kwargs": env.kwargs, "published_at": env.published_at,
            "started_at": ctx.started_at,
        }
        if env.options:
            rec["options"] = env.options
        return rec

    def before(self, ctx: TaskContext) -> None:
        self.store.put_result(ctx.envelope.id, self._base(ctx), self.ttl)

    def after(self, ctx: TaskContext) -> None:
        if ctx.status in ("requeued", "retry"):
            return  # not finished: it will run again (its next start writes a new "running" record)
        exc = ctx.exception
        record = self._base(ctx)
        finished = ctx.finished_at or time.time()
        record["finished_at"] = finished
        record["duration"] = finished - ctx.started_at
        if ctx.status == "success":
            record["result"] = ctx.result
        elif isinstance(exc, Skip):
            record["reason"] = exc.reason
            record["error"] = {"type": ctx.status, "message": exc.reason, "traceback": None}
            if ctx.status == "duplicate" and isinstance(exc.detail, dict) and exc.detail.get("task_id"):
                original = exc.detail["task_id"]
                record["duplicate_of"] = original
                prior = self.store.get_result(original)
                if prior is not None and prior.get("status") == "running":
                    # its final record lands a moment after its dedup marker: wait briefly for it
                    prior = self.store.get_result(original, 5.0)
                if prior is not None and prior.get("status") == "success":
                    record["result"] = prior.get("result")
        elif exc is not None:
            reason = ctx.state.get("dead_reason") or getattr(exc, "reason", None)
            if reason:
                record["reason"] = str(reason)
            record["error"] = {"type": type(exc).__name__, "message": str(exc),
                               "traceback": ctx.state.get("traceback")}
        self.store.put_result(ctx.envelope.id, record, self.ttl)


@hookimpl
def register_controls(registry: Registry) -> None:
    registry.add_control("results", "boostkernel.builtin:ResultsControl", params=("results",), order=ORDER_RESULTS,
                         summary="Result and status records for AsyncResult.get()")
