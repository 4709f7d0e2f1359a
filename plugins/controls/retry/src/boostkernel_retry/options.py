"""Options of the retry control: its ``@boost`` parameters, their defaults and documentation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from boostkernel.errors import ConfigError
from boostkernel.options import option

#: Position in the control chain (lower runs first and wraps outermost); see docs/plugins.md.
ORDER = 300


@dataclass(frozen=True, kw_only=True)
class RetryOptions:
    max_retries: int = option(0, "Retries after a failure before the message goes to the dead-letter queue",
                              per_message=True)
    max_retries_cap: int | None = option(
        None, "Highest max_retries one message may ask for (TaskOptions): above it publish fails and a worker "
        "clamps it; None: no cap", switch=False)
    retry_backoff: float = option(0.0, "Base of exponential backoff in seconds between retries (0 = retry at once)")
    retry_backoff_max: float = option(300.0, "Longest backoff in seconds")
    retry_jitter: bool = option(True, "Draw each backoff uniformly from [delay/2, delay]")
    retry_on: tuple[type[BaseException], ...] = option(
        (Exception,), "Only these exception types are retried; others go straight to the dead-letter queue",
        configurable=False)
    retry_mode: Literal["worker", "republish"] = option(
        "worker", "'worker' retries in place; 'republish' sends the message back to the queue with its delay")

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ConfigError(f"max_retries={self.max_retries!r}: must be an integer >= 0")
        cap = self.max_retries_cap
        if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < self.max_retries):
            raise ConfigError(f"max_retries_cap={cap!r}: must be an integer >= max_retries ({self.max_retries})")
