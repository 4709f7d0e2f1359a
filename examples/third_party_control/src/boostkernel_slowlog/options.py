"""The ``@boost`` options this plugin adds: a frozen, keyword-only dataclass whose fields have defaults."""

from __future__ import annotations

from dataclasses import dataclass

from boostkernel import ConfigError, option

#: After the kernel's own controls, before the result writer (900): see docs/plugins.md for the orders.
ORDER = 800


@dataclass(frozen=True, kw_only=True)
class SlowLogOptions:
    slow_after: float | None = option(
        None, "Record (and log) tasks running longer than this many seconds", per_message=True)
    slowlog_keep: int = option(100, "How many slow task ids to keep per queue", switch=False)

    def __post_init__(self) -> None:
        if self.slow_after is not None and self.slow_after <= 0:
            raise ConfigError(f"slow_after={self.slow_after!r}: must be a positive number of seconds")
        if self.slowlog_keep < 1:
            raise ConfigError(f"slowlog_keep={self.slowlog_keep!r}: must be >= 1")
