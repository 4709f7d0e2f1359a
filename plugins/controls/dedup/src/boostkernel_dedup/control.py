"""The dedup control: a task whose arguments (or ``TaskOptions.dedup_key``) already ran successfully is skipped.

Store keys (through ``booster.store``: SQLite on one host, Redis across machines):

* ``dedup:<queue>:<sha256>`` - the *done* marker, written in ``after()`` **only when the run succeeded**,
  with ``dedup_ttl`` as its TTL (none: permanent). Its value names the task that ran.
* ``dedup:<queue>:<sha256>:claim`` - the *claim*, taken in ``before()`` with ``only_if_absent`` so two
  identical messages running at the same moment do not both run: the second is requeued (after a short
  delay) and, once the first succeeded, skipped. A failed run releases its claim and writes no marker, so
  the next identical message runs. The claim has a lease (``claim_ttl``) so a worker that dies while
  holding it cannot block the key forever; a redelivery of the *same* message re-takes its own claim.

The hash is over the queue and the canonical JSON (sorted keys) of the call's arguments *bound to the
function's signature with defaults applied*, so ``f(1, 2)``, ``f(1, y=2)`` and ``f(x=1, y=2)`` are one call.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import orjson

from boostkernel.control import Control, TaskContext
from boostkernel.errors import ConfigError, Requeue, Skip

_OPTS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def _canonical(booster: Any, args: list[Any], kwargs: dict[str, Any]) -> bytes:
    try:
        bound = booster.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        payload: Any = bound.arguments
    except TypeError:  # does not fit the signature: the consumer dead-letters it anyway
        payload = {"args": args, "kwargs": kwargs}
    return orjson.dumps(payload, option=_OPTS, default=repr)


def key_for_custom(queue: str, key: str) -> str:
    return f"dedup:{queue}:k:{hashlib.sha256(key.encode()).hexdigest()}"


def key_for_call(booster: Any, args: list[Any], kwargs: dict[str, Any]) -> str:
    digest = hashlib.sha256(booster.queue.encode() + b"\0" + _canonical(booster, args, kwargs)).hexdigest()
    return f"dedup:{booster.queue}:{digest}"


class DedupControl(Control):
    name = "dedup"
    needs_store = True
    requires = {"dedup": "dedup_ttl={params.dedup_ttl!r} on queue {params.queue!r} does nothing without dedup: "
                         "use @boost({params.queue!r}, dedup=True, dedup_ttl={params.dedup_ttl!r})"}

    def __init__(self, booster: Any) -> None:
        super().__init__(booster)
        self.store = booster.store
        self.ttl = self.params.dedup_ttl
        opts = self.options
        timeout = getattr(self.params, "timeout", None)  # the timeout control's option, when installed
        #: Lease of an in-flight claim. Longer than any run, so a live run's claim never lapses.
        self.claim_ttl = float(opts.dedup_claim_ttl if opts.dedup_claim_ttl is not None else
                               (max(600.0, 2 * timeout + 60) if timeout else 600.0))
        #: Seconds an identical message waits in the queue while another copy is running.
        self.busy_delay = float(opts.dedup_busy_delay)

    @classmethod
    def check(cls, booster: Any) -> None:
        super().check(booster)
        p = booster.params
        if p.dedup_ttl is not None and (not isinstance(p.dedup_ttl, (int, float)) or p.dedup_ttl <= 0):
            raise ConfigError(f"dedup_ttl={p.dedup_ttl!r}: must be a positive number of seconds "
                              "(or None: skip identical calls forever)")
        for name in ("dedup_claim_ttl", "dedup_busy_delay"):
            v = getattr(p, name)
            if v is not None and v <= 0:
                raise ConfigError(f"{name}={v!r}: must be a positive number of seconds")

    def key(self, ctx: TaskContext) -> str:
        env = ctx.envelope
        custom = env.options.get("dedup_key")
        if custom is not None:
            return key_for_custom(env.queue, str(custom))
        return key_for_call(self.booster, env.args, env.kwargs)

    def before(self, ctx: TaskContext) -> None:
        key = self.key(ctx)
        store, tid = self.store, ctx.envelope.id
        claim = key + ":claim"
        # Claim first, then look for the done marker: a run that succeeded wrote its marker *before*
        # releasing its claim, so whoever claims after that release is sure to see the marker.
        if not store.set(claim, tid, ttl=self.claim_ttl, only_if_absent=True):
            done = store.get(key)
            if done is not None:
                raise Skip(f"duplicate of task {done.get('task_id')} (dedup)", status="duplicate", detail=done)
            holder = store.get(claim)
            if holder != tid:  # another copy runs right now: come back later (its outcome decides)
                raise Requeue(self.busy_delay, f"an identical task ({holder}) is running (dedup)")
            store.set(claim, tid, ttl=self.claim_ttl)  # our own redelivery after a crash: renew
        done = store.get(key)
        if done is not None:
            store.delete(claim)
            raise Skip(f"duplicate of task {done.get('task_id')} (dedup)", status="duplicate", detail=done)
        ctx.state["dedup_key"] = key

    def after(self, ctx: TaskContext) -> None:
        key = ctx.state.get("dedup_key")
        if key is None:  # we did not claim (duplicate, busy, or an earlier control stopped it)
            return
        if ctx.status == "success":
            self.store.set(key, {"task_id": ctx.envelope.id, "at": time.time()}, ttl=self.ttl)
        # success: the marker now guards; anything else: free the key for the next identical message
        self.store.delete(key + ":claim")


__all__ = ["DedupControl", "key_for_call", "key_for_custom"]
