"""Options of the ratelimit control: its ``@boost`` parameters, their defaults and documentation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from boostkernel.errors import ConfigError
from boostkernel.options import option

#: Position in the control chain (lower runs first and wraps outermost); see docs/plugins.md.
ORDER = 260


@dataclass(frozen=True, kw_only=True)
class RateLimitOptions:
    qps: float | None = option(None, "Rate limit: task starts per second (fractional allowed, e.g. 0.5 = one every 2 s)")
    qps_scope: Literal["process", "global"] = option(
        "process", "'global' shares the qps budget among every process and machine through the store")

    def __post_init__(self) -> None:
        if self.qps is not None and self.qps <= 0:
            raise ConfigError(f"qps={self.qps!r}: must be a positive number (e.g. 0.5 for one run every 2 s)")
