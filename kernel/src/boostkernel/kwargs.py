"""``BoostKwargs``: the ``@boost`` keywords an IDE and a type checker know about.

The core settings (:class:`~boostkernel.params.BoostParams`) and the options of the in-tree controls, as
a ``TypedDict`` used with ``Unpack`` in :func:`boostkernel.boost`'s first overload, so ``@boost(``
completes them and checks their types. Options of other installed controls are accepted too (a second
overload takes any keyword; they are checked at decoration time). kernel/tests/test_options.py checks
that this list matches the in-tree controls' options classes.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict


class BoostKwargs(TypedDict, total=False):
    # --- core (BoostParams) ---
    broker: str
    broker_url: str | None
    broker_options: dict[str, Any]
    store: str | None
    store_url: str | None
    data_dir: str | None
    concurrency: str
    workers: int
    processes: int
    prefetch: int | None
    cpu_affinity: str | tuple[int, ...] | list[int] | None
    results: bool
    result_ttl: float
    validate_args: bool
    max_deliveries: int
    signing_key: str | tuple[str, ...] | None
    group: str | None
    log_level: str
    # --- ratelimit ---
    qps: float | None
    qps_scope: Literal["process", "global"]
    # --- retry ---
    max_retries: int
    max_retries_cap: int | None
    retry_backoff: float
    retry_backoff_max: float
    retry_jitter: bool
    retry_on: tuple[type[BaseException], ...]
    retry_mode: Literal["worker", "republish"]
    # --- timeout ---
    timeout: float | None
    timeout_cap: float | None
    # --- dedup ---
    dedup: bool
    dedup_ttl: float | None
    dedup_claim_ttl: float | None
    dedup_busy_delay: float
    # --- expiry ---
    expires: float | None
    # --- timewindow ---
    allowed_window: str | None
    window_tz: str | None
    # --- pause ---
    pausable: bool
    pause_poll_interval: float
    # --- cancel ---
    cancellable: bool
    cancel_poll_interval: float
    # --- circuitbreaker ---
    circuit_breaker: tuple[int, float] | None
    # --- quota ---
    quota: tuple[int, float] | None
    # --- stats ---
    stats_interval: float | None
    # --- workflow ---
    workflow: bool
