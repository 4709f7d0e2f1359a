"""Searching the task records that ``results=True`` boosters write to their store (``result:<task id>``).

A store may answer the search itself with an indexed query by defining
``search_results(queue=, status=, since=, until=, task_id=, text=, limit=)`` with the same meaning as
:func:`search`; otherwise the records are listed with ``keys("result:")`` and filtered here, which is fine
for thousands of records, not for millions. The SQLite, PostgreSQL and Redis stores search natively (indexes
made by the first search); Redis matches text by word starts (see docs/dashboard.md, "Searching millions of
task records").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True)
class Query:
    queue: str | None = None
    status: str | None = None
    since: float | None = None
    """Unix seconds: records published at or after."""
    until: float | None = None
    task_id: str | None = None
    """A task id or its prefix."""
    text: str | None = None
    """Text found in the JSON of the arguments (case-insensitive)."""
    limit: int = 100

    def matches(self, rec: dict[str, Any]) -> bool:
        if self.queue and rec.get("queue") != self.queue:
            return False
        if self.status and rec.get("status") != self.status:
            return False
        at = rec.get("published_at") or rec.get("started_at") or 0.0
        if self.since is not None and at < self.since:
            return False
        if self.until is not None and at > self.until:
            return False
        if self.task_id and not str(rec.get("task_id", "")).startswith(self.task_id):
            return False
        if self.text:
            blob = orjson.dumps([rec.get("args"), rec.get("kwargs")], default=repr).decode().lower()
            if self.text.lower() not in blob:
                return False
        return True


def record_time(rec: dict[str, Any]) -> float:
    return float(rec.get("published_at") or rec.get("started_at") or 0.0)


def search(stores: list[Any], q: Query) -> list[dict[str, Any]]:
    """Records matching ``q`` in any of ``stores``, newest first, at most ``q.limit``."""
    found: dict[str, dict[str, Any]] = {}
    for store in stores:
        native = getattr(store, "search_results", None)
        if native is not None:
            recs = native(queue=q.queue, status=q.status, since=q.since, until=q.until, task_id=q.task_id,
                          text=q.text, limit=q.limit)
        else:
            recs = _scan(store, q)
        for r in recs:
            found.setdefault(str(r.get("task_id")), r)
    return sorted(found.values(), key=record_time, reverse=True)[:q.limit]


def _scan(store: Any, q: Query) -> list[dict[str, Any]]:
    prefix = "result:" + (q.task_id or "")
    try:
        keys = store.keys(prefix)
    except NotImplementedError:
        return []
    many = getattr(store, "get_many", None)
    out: list[dict[str, Any]] = []
    for i in range(0, len(keys), 500):
        chunk = keys[i:i + 500]
        values = many(chunk) if many is not None else [store.get(k) for k in chunk]
        out.extend(r for r in values if isinstance(r, dict) and q.matches(r))
    return out
