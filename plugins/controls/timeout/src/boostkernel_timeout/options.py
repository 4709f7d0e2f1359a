"""Options of the timeout control: its ``@boost`` parameters, their defaults and documentation."""

from __future__ import annotations

from dataclasses import dataclass

from boostkernel.errors import ConfigError
from boostkernel.options import option

#: Position in the control chain (lower runs first and wraps outermost); see docs/plugins.md.
ORDER = 400


@dataclass(frozen=True, kw_only=True)
class TimeoutOptions:
    timeout: float | None = option(None, "Stop the function after this many seconds", per_message=True)
    timeout_cap: float | None = option(
        None, "Longest timeout one message may ask for (TaskOptions): above it publish fails and a worker clamps "
        "it; None: no cap", switch=False)

    def __post_init__(self) -> None:
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError(f"timeout={self.timeout!r}: must be a positive number of seconds")
        cap = self.timeout_cap
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, (int, float)) or cap <= 0
                                or (self.timeout is not None and cap < self.timeout)):
            raise ConfigError(f"timeout_cap={cap!r}: must be a positive number of seconds >= timeout "
                              f"({self.timeout})")
