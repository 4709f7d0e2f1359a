"""Options of the dedup control: its ``@boost`` parameters, their defaults and documentation."""

from __future__ import annotations

from dataclasses import dataclass

from boostkernel.options import option

#: Position in the control chain (lower runs first and wraps outermost); see docs/plugins.md.
ORDER = 200


@dataclass(frozen=True, kw_only=True)
class DedupOptions:
    dedup: bool = option(False, "Skip a task whose arguments already ran successfully (within dedup_ttl when set)")
    dedup_ttl: float | None = option(None, "Seconds a successful run keeps identical calls away (None = forever)")
    dedup_claim_ttl: float | None = option(
        None, "Lease of an in-flight claim in seconds (default max(600, 2 * timeout + 60))", switch=False)
    dedup_busy_delay: float = option(
        1.0, "Seconds an identical message waits in the queue while another copy runs", switch=False)
