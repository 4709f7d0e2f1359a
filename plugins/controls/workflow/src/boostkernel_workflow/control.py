"""The workflow control: after a workflow member finished, do the workflow's next move, before the ack.

A member's message carries its workflow in the envelope header ``wf`` (JSON only)::

    chain step:   {"w": WID, "k": "chain", "rest": [STEP, ...], "last": {"q": QUEUE, "id": TASK_ID}}
    chord member: {"w": WID, "k": "chord", "i": INDEX, "n": SIZE, "cb": STEP}
    STEP:         {"q": QUEUE, "a": [ARGS], "k": {KWARGS}, "id": TASK_ID, "im": IMMUTABLE}

Every task id is chosen when the workflow is published, so publishing a step again publishes the same task.
The next step is resolved by its queue name to a booster defined in this worker process (never by importing
a name taken from a message); that booster's store holds the workflow's coordination keys:

* ``wf:sent:<task id>`` - the step was published (checked before and written after publishing it, so a
  redelivered member does not publish it again; a crash between the two publishes it twice, same task id).
* ``wf:<wid>:r:<i>`` - chord member ``i``'s result; ``wf:<wid>:n`` - how many member completions were
  counted (a counter: a redelivered member counts twice, so reaching ``n`` is only a hint and the results
  are checked); ``wf:<wid>:cb`` - the claim to act on the chord's end (``set(only_if_absent)``): its holder
  publishes the callback (or, ``failed:<task id>``, writes the chord's failure). A redelivery of the
  holder acts again; everyone else does nothing.

All of this runs in ``after()`` at order 940, after the result writer (900) stored the member's record and
before the consumer acknowledges the message: a worker killed with ``kill -9`` in between leaves the
message unacknowledged, the broker redelivers it and the move is made again. A move that fails for a
passing reason (the broker or store is down) requeues the member's message; one that can never work (no
booster for the next queue in this process, arguments that do not fit) fails the workflow with the reason.
"""

from __future__ import annotations

import time
from typing import Any

from boostkernel.context import Outcome
from boostkernel.control import Control, TaskContext
from boostkernel.errors import ConfigError, Requeue, Skip
from boostkernel.params import TaskOptions
from boostkernel.registry import get_booster
from boostkernel.results import FINAL_STATUSES

#: Statuses that end a member successfully (a dedup duplicate carries the result of the run it repeats).
_OK = ("success", "duplicate")


class WorkflowBroken(Exception):
    """A workflow move that can never succeed (no booster for the next queue, arguments that do not fit)."""


class WorkflowControl(Control):
    name = "workflow"
    needs_store = True
    requires = {"results": "workflow=True on queue {params.queue!r} needs the members' results: "
                           "use @boost({params.queue!r}, results=True, workflow=True)"}

    @classmethod
    def check(cls, booster: Any) -> None:
        super().check(booster)
        if booster.broker_class.capabilities.needs_own_worker:
            raise ConfigError(f"workflow=True on queue {booster.params.queue!r}: broker {booster.broker_name!r} runs "
                              "its tasks in its framework's own worker, where the workflow control does not run; use "
                              "a broker that boostkernel consumes itself (sqlite, redis, rabbitmq ...)")

    def after(self, ctx: TaskContext) -> None:
        meta = ctx.envelope.headers.get("wf")
        if meta is None or not ctx.status.final:
            return  # not a workflow member, or it will run again (retry, requeue)
        try:
            if not isinstance(meta, dict):
                raise WorkflowBroken(f"malformed workflow header {meta!r}")
            kind = meta.get("k")
            if kind == "chain":
                self._chain(ctx, meta)
            elif kind == "chord":
                self._chord(ctx, meta)
            else:
                raise WorkflowBroken(f"unknown workflow kind {kind!r}")
        except WorkflowBroken as exc:
            self.booster_log().error("workflow %s cannot go on after task %s: %s", meta.get("w") if isinstance(
                meta, dict) else "?", ctx.envelope.id, exc)
            self._fail_after_broken(ctx, meta, str(exc))
        except Exception as exc:  # noqa: BLE001 - a passing failure: run the member again
            self.booster_log().warning("workflow move after task %s failed (%s: %s): the message is requeued",
                                       ctx.envelope.id, type(exc).__name__, exc)
            ctx.status = Outcome.REQUEUED
            ctx.exception = Requeue(1.0, f"workflow move failed: {exc}")

    def booster_log(self) -> Any:
        import logging

        return logging.getLogger(f"boostkernel.workflow.{self.booster.queue}")

    # --- outcome of the member ---------------------------------------------------------------------
    def _outcome(self, ctx: TaskContext) -> tuple[bool, Any]:
        status = ctx.status.value
        if status == "success":
            return True, ctx.result
        if status == "duplicate":
            rec = self.booster.store.get_result(ctx.envelope.id) or {}
            return True, rec.get("result")
        return False, None

    def _error(self, ctx: TaskContext) -> dict[str, Any]:
        exc = ctx.exception
        if isinstance(exc, Skip) or exc is None:
            reason = exc.reason if isinstance(exc, Skip) else str(ctx.state.get("dead_reason") or ctx.status.value)
            return {"type": ctx.status.value, "message": reason, "traceback": None}
        return {"type": type(exc).__name__, "message": str(exc), "traceback": ctx.state.get("traceback")}

    # --- chain ---------------------------------------------------------------------------------------
    def _chain(self, ctx: TaskContext, meta: dict[str, Any]) -> None:
        rest = meta.get("rest") or []
        if not rest:
            return  # the last step: its own record is the chain's result
        ok, value = self._outcome(ctx)
        if not ok:  # the chain stops here: its result is this step's error
            last = meta["last"]
            self._write_failure(last["q"], last["id"], self._error(ctx),
                                f"chain step {ctx.envelope.queue!r} (task {ctx.envelope.id}) ended {ctx.status.value}",
                                ctx.envelope.id)
            return
        self._publish(rest[0], value, {**meta, "rest": rest[1:]})  # the last step gets "rest": [] (nothing next)

    # --- chord ---------------------------------------------------------------------------------------
    def _chord(self, ctx: TaskContext, meta: dict[str, Any]) -> None:
        cb, wid, n, i = meta["cb"], str(meta["w"]), int(meta["n"]), int(meta["i"])
        cbb = self._booster_of(cb["q"])
        store, ttl = cbb.store, cbb.params.result_ttl
        me = ctx.envelope.id
        claim = f"wf:{wid}:cb"
        ok, value = self._outcome(ctx)
        if not ok:  # the first failed member fails the chord: the callback never runs
            mine = f"failed:{me}"
            if store.set(claim, mine, ttl=ttl, only_if_absent=True) or store.get(claim) == mine:
                self._write_failure(cb["q"], cb["id"], self._error(ctx),
                                    f"chord member {i} on {ctx.envelope.queue!r} (task {me}) ended {ctx.status.value}",
                                    me)
            return
        store.set(f"wf:{wid}:r:{i}", [value], ttl=ttl)
        if store.incr(f"wf:{wid}:n", 1, ttl=ttl) < n:
            return  # others still run (every completion counts after storing its result: the last one sees all)
        values = [store.get(f"wf:{wid}:r:{j}") for j in range(n)]
        if any(v is None for v in values):
            return  # a redelivered member counted twice: the missing one will count again
        if not store.set(claim, me, ttl=ttl, only_if_absent=True) and store.get(claim) != me:
            return  # another member (or a failure) took the chord's end
        self._publish(cb, [v[0] for v in values], None)

    # --- moves ---------------------------------------------------------------------------------------
    def _booster_of(self, queue: str) -> Any:
        b = get_booster(queue)
        if b is None:
            raise WorkflowBroken(f"queue {queue!r} has no booster in this worker process: import the module that "
                                 "defines it in every worker that runs the workflow's members")
        return b

    def _publish(self, step: dict[str, Any], value: Any, meta: dict[str, Any] | None) -> None:
        b = self._booster_of(step["q"])
        sent = f"wf:sent:{step['id']}"
        store = b.store
        if store.get(sent) is not None:
            return  # published already (this member's message is a redelivery)
        args = list(step.get("a") or [])
        if not step.get("im"):
            args.insert(0, value)
        options = TaskOptions(task_id=step["id"], headers={"wf": meta} if meta is not None else None)
        try:
            b.publish(dict(step.get("k") or {}), options, args=args)
        except (TypeError, ValueError, ConfigError) as exc:  # arguments that can never fit
            raise WorkflowBroken(f"cannot publish the next step to {step['q']!r}: {exc}") from None
        store.set(sent, time.time(), ttl=b.params.result_ttl)

    def _write_failure(self, queue: str, task_id: str, error: dict[str, Any], reason: str, member: str) -> None:
        b = get_booster(queue) or self.booster
        rec = b.store.get_result(task_id)
        if rec is not None and rec.get("status") in FINAL_STATUSES:
            return
        now = time.time()
        b.store.put_result(task_id, {"task_id": task_id, "queue": queue, "status": "failure", "error": error,
                                     "reason": reason, "failed_member": member, "finished_at": now},
                           b.params.result_ttl)

    def _fail_after_broken(self, ctx: TaskContext, meta: Any, why: str) -> None:
        if not isinstance(meta, dict):
            return
        target = meta.get("last") if meta.get("k") == "chain" else meta.get("cb")
        if not isinstance(target, dict) or "q" not in target or "id" not in target:
            return
        try:
            self._write_failure(target["q"], target["id"], {"type": "WorkflowBroken", "message": why,
                                                            "traceback": None},
                                f"workflow broken after task {ctx.envelope.id}", ctx.envelope.id)
        except Exception:  # noqa: BLE001 - the error is logged above
            self.booster_log().exception("could not record the workflow's failure")


__all__ = ["WorkflowControl", "WorkflowBroken"]
