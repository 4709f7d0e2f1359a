"""Signatures and the ``chain`` / ``group`` / ``chord`` primitives (see docs/workflows.md).

::

    from boostkernel_workflow import chain, group, chord

    chain(add.s(1, 2), mul.s(10), show.s()).push().get(30)       # show(mul(add(1, 2), 10))
    group(add.s(1, 1), add.s(2, 2)).push().get(30)              # [2, 4]
    chord(group(add.s(1, 1), add.s(2, 2)), total.s()).push().get(30)   # total([2, 4])
    (add.s(1, 2) | mul.s(10)).push()                              # the | operator builds chains and chords
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from boostkernel.errors import ConfigError
from boostkernel.message import uuid7
from boostkernel.params import TaskOptions
from boostkernel.results import AsyncResult, wait_all

if TYPE_CHECKING:
    from boostkernel import Booster

__all__ = ["Signature", "Chain", "Group", "Chord", "ChainResult", "GroupResult", "ChordResult", "sig", "chain",
           "group", "chord", "booster_signature", "booster_immutable_signature"]


class Signature:
    """One task call, not yet published: a booster with its arguments. Immutable.

    In a chain, the previous step's result is passed as the first positional argument (a chord's callback
    gets the list of the members' results), unless the signature is ``immutable`` (``f.si(...)``)."""

    __slots__ = ("_booster", "_args", "_kwargs", "_immutable")
    _booster: Booster[Any, Any]
    _args: tuple[Any, ...]
    _kwargs: Mapping[str, Any]
    _immutable: bool

    def __init__(self, booster: Booster[Any, Any], args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None,
                 immutable: bool = False) -> None:
        if not hasattr(booster, "queue") or not hasattr(booster, "publish"):
            raise TypeError(f"a signature needs a booster (a function decorated with @boost), got {booster!r}")
        object.__setattr__(self, "_booster", booster)
        object.__setattr__(self, "_args", tuple(args))
        object.__setattr__(self, "_kwargs", types.MappingProxyType(dict(kwargs or {})))
        object.__setattr__(self, "_immutable", bool(immutable))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a Signature is immutable")

    @property
    def booster(self) -> Booster[Any, Any]:
        return self._booster  # type: ignore[no-any-return]

    @property
    def queue(self) -> str:
        return str(self._booster.queue)

    @property
    def args(self) -> tuple[Any, ...]:
        return self._args

    @property
    def kwargs(self) -> Mapping[str, Any]:
        return self._kwargs

    @property
    def immutable(self) -> bool:
        return self._immutable

    def __or__(self, other: Any) -> Chain:
        return chain(self, other)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Signature) and (self.booster, self.args, dict(self.kwargs), self.immutable) == (
            other.booster, other.args, dict(other.kwargs), other.immutable)

    def __hash__(self) -> int:
        return hash((self.queue, repr(self.args), repr(sorted(self.kwargs.items())), self.immutable))

    def push(self) -> AsyncResult[Any]:
        """Publish this call alone (like ``booster.push(*args, **kwargs)``)."""
        result: AsyncResult[Any] = self.booster.publish(dict(self.kwargs), None, args=self.args)
        return result

    delay = push

    def __repr__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.queue}.{'si' if self.immutable else 's'}({', '.join(parts)})"

    # --- internals -----------------------------------------------------------------------------------
    def _check_fits(self, extra: int) -> None:
        """The arguments bind to the function, with ``extra`` leading values still to come (a result)."""
        b = self.booster
        lead: list[Any] = [None] * (extra + (1 if getattr(b, "method_kind", None) == "class" else 0))
        try:
            b.signature.bind(*lead, *self.args, **self.kwargs)
        except TypeError as exc:
            given = " (after the previous step's result as the first argument)" if extra else ""
            raise TypeError(f"{self!r}{given} does not fit {b.fn.__name__}{b.signature}: {exc}") from None

    def _wire(self, task_id: str) -> dict[str, Any]:
        step: dict[str, Any] = {"q": self.queue, "a": list(self.args), "k": dict(self.kwargs), "id": task_id}
        if self.immutable:
            step["im"] = True
        return step

    def _publish(self, task_id: str, args_prefix: Sequence[Any] = (), meta: dict[str, Any] | None = None) -> None:
        args = list(self.args) if self.immutable else [*args_prefix, *self.args]
        self.booster.publish(dict(self.kwargs), TaskOptions(task_id=task_id, headers={"wf": meta} if meta else None),
                             args=args)


def sig(booster: Booster[Any, Any], *args: Any, immutable: bool = False, **kwargs: Any) -> Signature:
    """``sig(f, 1, y=2)`` is ``f.s(1, y=2)``; ``immutable=True`` is ``f.si(...)``."""
    return Signature(booster, args, kwargs, immutable)


def booster_signature(booster: Booster[Any, Any], *args: Any, **kwargs: Any) -> Signature:
    """``f.s(*args, **kwargs)``: a signature that receives the previous step's result first."""
    return Signature(booster, args, kwargs)


def booster_immutable_signature(booster: Booster[Any, Any], *args: Any, **kwargs: Any) -> Signature:
    """``f.si(*args, **kwargs)``: a signature that ignores the previous step's result."""
    return Signature(booster, args, kwargs, immutable=True)


def _needs(s: Signature, role: str, workflow: bool) -> None:
    """``s``'s booster has what its role in a workflow needs, or a ConfigError naming the fix."""
    b = s.booster
    missing = []
    if not b.params.results:
        missing.append("results=True")
    if workflow and not any(r.name == "workflow" for r in b.control_registrations):
        missing.append("workflow=True")
    if missing:
        fix = "results=True, workflow=True" if workflow else "results=True"
        raise ConfigError(f"{s!r} is {role}, which needs {' and '.join(missing)} on queue {s.queue!r}: "
                          f"use @boost({s.queue!r}, {fix}, ...)")


def _as_signatures(items: Iterable[Any], what: str) -> list[Signature]:
    out = []
    for item in items:
        if not isinstance(item, Signature):
            raise TypeError(f"{what} takes signatures (f.s(...)), got {item!r}; nesting chains, groups and chords "
                            "inside each other is not supported yet (docs/workflows.md)")
        out.append(item)
    return out


class Chain:
    """Steps run one after another; each step's result is the next step's first argument."""

    __slots__ = ("steps",)

    def __init__(self, steps: Sequence[Signature]) -> None:
        if not steps:
            raise ValueError("chain() needs at least one signature")
        self.steps: tuple[Signature, ...] = tuple(steps)
        for i, s in enumerate(self.steps):
            s._check_fits(1 if i and not s.immutable else 0)
            if i < len(self.steps) - 1:
                _needs(s, f"step {i + 1} of a chain", workflow=True)
            else:
                _needs(s, "the last step of a chain", workflow=False)

    def __or__(self, other: Any) -> Chain:
        return chain(*self.steps, other)

    def push(self) -> ChainResult:
        """Publish the first step (the others are published by the workers, each after the previous one)."""
        wid = uuid7()
        ids = [uuid7() for _ in self.steps]
        last = self.steps[-1]
        rest = [s._wire(t) for s, t in zip(self.steps[1:], ids[1:], strict=False)]
        meta = {"w": wid, "k": "chain", "rest": rest, "last": {"q": last.queue, "id": ids[-1]}}
        self.steps[0]._publish(ids[0], (), meta if rest else None)
        return ChainResult(ids[-1], last.booster, [AsyncResult(t, s.booster) for s, t in zip(self.steps, ids, strict=False)])

    delay = push

    def __repr__(self) -> str:
        return " | ".join(repr(s) for s in self.steps)


class Group:
    """Members run in parallel; the result is the list of their results, in order."""

    __slots__ = ("members",)

    def __init__(self, members: Sequence[Signature]) -> None:
        self.members: tuple[Signature, ...] = tuple(members)
        for i, s in enumerate(self.members):
            s._check_fits(0)
            _needs(s, f"member {i + 1} of a group", workflow=False)

    def __or__(self, other: Any) -> Chord:
        if not isinstance(other, Signature):
            raise TypeError(f"group | {other!r}: only a signature can follow a group (it becomes a chord's callback)")
        return Chord(self, other)

    def push(self) -> GroupResult:
        results: list[AsyncResult[Any]] = []
        for s in self.members:
            tid = uuid7()
            s._publish(tid)
            results.append(AsyncResult(tid, s.booster))
        return GroupResult(results)

    delay = push

    def __len__(self) -> int:
        return len(self.members)

    def __repr__(self) -> str:
        return f"group({', '.join(repr(s) for s in self.members)})"


class Chord:
    """A group, then a callback called with the list of the group's results (once, when all succeeded)."""

    __slots__ = ("header", "body")

    def __init__(self, header: Group | Sequence[Signature], body: Signature) -> None:
        self.header = header if isinstance(header, Group) else Group(_as_signatures(header, "chord()"))
        if not isinstance(body, Signature):
            raise TypeError(f"a chord's callback must be a signature (f.s(...)), got {body!r}")
        self.body = body
        body._check_fits(0 if body.immutable else 1)
        _needs(body, "a chord's callback", workflow=False)
        for i, s in enumerate(self.header.members):
            _needs(s, f"member {i + 1} of a chord", workflow=True)

    def push(self) -> ChordResult:
        wid, cb_id = uuid7(), uuid7()
        ids = [uuid7() for _ in self.header.members]
        cb = self.body._wire(cb_id)
        n = len(ids)
        if n == 0:  # nothing to wait for: the callback gets an empty list now
            self.body._publish(cb_id, ([],))
        for i, (s, tid) in enumerate(zip(self.header.members, ids, strict=False)):
            s._publish(tid, (), {"w": wid, "k": "chord", "i": i, "n": n, "cb": cb})
        members = GroupResult([AsyncResult(t, s.booster) for s, t in zip(self.header.members, ids, strict=False)])
        return ChordResult(cb_id, self.body.booster, members)

    delay = push

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"


class ChainResult(AsyncResult[Any]):
    """The result of a chain: the last step's :class:`AsyncResult` (``get()`` returns its result, or raises
    the failed step's error); ``steps`` holds every step's."""

    __slots__ = ("steps",)

    def __init__(self, task_id: str, booster: Booster[Any, Any], steps: list[AsyncResult[Any]]) -> None:
        super().__init__(task_id, booster)
        self.steps = steps


class ChordResult(AsyncResult[Any]):
    """The result of a chord: the callback's :class:`AsyncResult` (``get()`` returns the callback's result,
    or raises the first failed member's error); ``members`` is the group's :class:`GroupResult`."""

    __slots__ = ("members",)

    def __init__(self, task_id: str, booster: Booster[Any, Any], members: GroupResult) -> None:
        super().__init__(task_id, booster)
        self.members = members


class GroupResult:
    """The results of a group's members, in order."""

    __slots__ = ("results",)

    def __init__(self, results: list[AsyncResult[Any]]) -> None:
        self.results = results

    def get(self, timeout: float | None = 30.0, return_exceptions: bool = False) -> list[Any]:
        """Every member's result in order (one shared ``timeout``); raises the first failure
        (:class:`TaskFailed`) unless ``return_exceptions`` puts it in its place."""
        return wait_all(self.results, timeout, return_exceptions)

    def ready(self) -> bool:
        return all(r.ready() for r in self.results)

    def __iter__(self) -> Any:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __repr__(self) -> str:
        return f"<GroupResult of {len(self.results)}>"


def chain(*steps: Any) -> Chain:
    """``chain(a.s(1), b.s(), c.s())``: ``c(b(a(1)))``, each step on its own queue and worker.

    Chains given as steps are flattened; a group followed by a signature is a chord, not a step."""
    flat: list[Any] = []
    for s in steps:
        flat.extend(s.steps if isinstance(s, Chain) else [s])
    return Chain(_as_signatures(flat, "chain()"))


def group(*members: Any) -> Group:
    """``group(a.s(1), a.s(2))`` or ``group([a.s(i) for i in range(10)])``: run in parallel, results in order."""
    if len(members) == 1 and not isinstance(members[0], Signature):
        members = tuple(members[0])
    return Group(_as_signatures(members, "group()"))


def chord(header: Group | Iterable[Signature], body: Signature) -> Chord:
    """``chord(group(...), cb.s())``: ``cb([results of the group, in order])`` once every member succeeded;
    the first member to fail (after its own retries) fails the chord with its error."""
    return Chord(header if isinstance(header, Group) else group(list(header)), body)
