"""Typed parameters of a booster (:class:`BoostParams`) and of one message (:class:`TaskOptions`).

Every parameter can be given to ``@boost(...)``, set by a ``BOOSTKERNEL_<NAME>`` environment variable
(e.g. ``BOOSTKERNEL_BROKER=redis``), or set in ``[tool.boostkernel]`` of the nearest pyproject.toml.
Precedence: argument > environment > pyproject.toml > default.

Control plugins read their own fields; a control is *active* only when one of its fields differs from
the default, so controls that are off cost nothing per message.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError

_QUEUE_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,200}$")


@dataclass(kw_only=True)
class BoostParams:
    """All settings of one booster. Defaults suit a single machine with the embedded SQLite broker."""

    queue: str
    """Queue name: letters, digits and ``_ . : -``."""

    # --- broker and store ---------------------------------------------------------------------
    broker: str = "sqlite"
    """Broker plugin name (``boostkernel plugins list`` shows the installed ones) or a URL (``redis://…``)."""
    broker_url: str | None = None
    """Connection URL for the broker; defaults to the plugin's own default (e.g. redis://127.0.0.1:6379/0)."""
    broker_options: dict[str, Any] = field(default_factory=dict)
    """Broker-specific options, passed through to the plugin (e.g. ``{"heartbeat_interval": 2}``)."""
    store: str | None = None
    """Store plugin for results and coordination; defaults to the broker's companion store."""
    store_url: str | None = None
    data_dir: str | None = None
    """Folder of the embedded SQLite files (default ``$BOOSTKERNEL_DATA_DIR`` or ``~/.local/share/boostkernel``)."""

    # --- concurrency --------------------------------------------------------------------------
    concurrency: str = "threads"
    """Concurrency plugin: ``threads``, ``asyncio``, ``solo``, ``gevent``, ``eventlet``."""
    workers: int = 16
    """Maximum number of tasks running at once in one process."""
    processes: int = 1
    """Number of worker processes ``consume()`` starts, each with its own pool."""
    prefetch: int | None = None
    """Messages fetched per round trip (default: twice ``workers``, at least 4). Returned on shutdown."""

    # --- results ------------------------------------------------------------------------------
    results: bool = False
    """Keep each task's result and status so ``AsyncResult.get()`` can return it."""
    result_ttl: float = 3600.0
    """Seconds a result is kept."""

    # --- controls (each implemented by a control plugin) -----------------------------------------
    qps: float | None = field(default=None, metadata={"plugin": "ratelimit"})
    """Rate limit: task starts per second (fractional allowed, e.g. 0.5 = one every 2 s)."""
    qps_scope: Literal["process", "global"] = field(default="process", metadata={"plugin": "ratelimit"})
    """``global`` shares the ``qps`` budget among every process and machine through the store."""
    max_retries: int = field(default=0, metadata={"plugin": "retry"})
    """Retries after a failure before the message goes to the dead-letter queue."""
    retry_backoff: float = field(default=0.0, metadata={"plugin": "retry"})
    """Base of exponential backoff in seconds between retries (0 = retry at once)."""
    retry_backoff_max: float = field(default=300.0, metadata={"plugin": "retry"})
    retry_jitter: bool = field(default=True, metadata={"plugin": "retry"})
    retry_on: tuple[type[BaseException], ...] = field(default=(Exception,), metadata={"plugin": "retry"})
    """Only these exception types are retried; others go straight to the dead-letter queue."""
    retry_mode: Literal["worker", "republish"] = field(default="worker", metadata={"plugin": "retry"})
    """``worker`` retries in place; ``republish`` sends the message back to the queue with its delay."""
    timeout: float | None = field(default=None, metadata={"plugin": "timeout"})
    """Stop the function after this many seconds."""
    dedup: bool = field(default=False, metadata={"plugin": "dedup"})
    """Skip a task whose arguments already ran successfully (within ``dedup_ttl`` when set)."""
    dedup_ttl: float | None = field(default=None, metadata={"plugin": "dedup"})
    expires: float | None = field(default=None, metadata={"plugin": "expiry"})
    """Drop messages older than this many seconds instead of running them."""
    allowed_window: str | None = field(default=None, metadata={"plugin": "timewindow"})
    """Cron expression of the minutes in which tasks may run; outside it consumption waits."""
    pausable: bool = field(default=False, metadata={"plugin": "pause"})
    """Poll the store for a pause flag so ``pause()``/``resume()`` from anywhere take effect."""
    cancellable: bool = field(default=False, metadata={"plugin": "cancel"})
    """Check revocations so ``AsyncResult.revoke()`` works for pending and running tasks."""
    circuit_breaker: tuple[int, float] | None = field(default=None, metadata={"plugin": "circuitbreaker"})
    """``(failures, cool_down_seconds)``: after that many consecutive failures, pause consuming."""
    quota: tuple[int, float] | None = field(default=None, metadata={"plugin": "quota"})
    """``(runs, period_seconds)``: at most that many task starts per period."""
    stats_interval: float | None = field(default=None, metadata={"plugin": "stats"})
    """Log execution statistics and time-left estimates every this many seconds."""
    validate_args: bool = True
    """Check arguments against the function's signature at publish time."""
    max_deliveries: int = 3
    """A message whose worker died this many times while running it goes to the dead-letter queue."""

    # --- misc ---------------------------------------------------------------------------------
    group: str | None = None
    """Consume group: ``boostkernel worker MODULE --group NAME`` starts only boosters of this group."""
    log_level: str = "INFO"
    extra: dict[str, Any] = field(default_factory=dict)
    """Typed options of third-party controls, keyed by control name."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if not isinstance(self.queue, str) or not _QUEUE_RE.match(self.queue):
            raise ConfigError(
                f"invalid queue name {self.queue!r}: use 1-200 letters, digits, '_', '.', ':' or '-'"
            )
        for name in ("workers", "processes"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{name}={v!r} for queue {self.queue!r}: must be an integer >= 1")
        if self.prefetch is not None and (not isinstance(self.prefetch, int) or self.prefetch < 0):
            raise ConfigError(f"prefetch={self.prefetch!r}: must be an integer >= 0")
        if self.qps is not None and (not isinstance(self.qps, (int, float)) or self.qps <= 0):
            raise ConfigError(f"qps={self.qps!r}: must be a positive number (e.g. 0.5 for one run every 2 s)")
        if self.qps_scope not in ("process", "global"):
            raise ConfigError(f"qps_scope={self.qps_scope!r}: must be 'process' or 'global'")
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ConfigError(f"max_retries={self.max_retries!r}: must be an integer >= 0")
        if self.retry_mode not in ("worker", "republish"):
            raise ConfigError(f"retry_mode={self.retry_mode!r}: must be 'worker' or 'republish'")
        if self.timeout is not None and (not isinstance(self.timeout, (int, float)) or self.timeout <= 0):
            raise ConfigError(f"timeout={self.timeout!r}: must be a positive number of seconds")
        if not isinstance(self.retry_on, tuple) or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in self.retry_on
        ):
            raise ConfigError("retry_on must be a tuple of exception classes, e.g. (ConnectionError,)")
        if self.result_ttl <= 0:
            raise ConfigError(f"result_ttl={self.result_ttl!r}: must be > 0")
        if self.max_deliveries < 1:
            raise ConfigError(f"max_deliveries={self.max_deliveries!r}: must be >= 1")

    @property
    def effective_prefetch(self) -> int:
        # Twice the pool (at least 4): enough to batch broker round trips, few enough that a long
        # task does not hold many messages away from other workers.
        return max(4, 2 * self.workers) if self.prefetch is None else self.prefetch

    def resolved_data_dir(self) -> Path:
        return Path(self.data_dir) if self.data_dir else default_data_dir()

    def non_default(self) -> dict[str, Any]:
        """The fields whose values differ from the defaults (used to pick active controls)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING
            )
            v = getattr(self, f.name)
            if v != default:
                out[f.name] = v
        return out


@dataclass(kw_only=True)
class TaskOptions:
    """Per-message overrides given to ``publish()``; ``None`` means "use the booster's setting"."""

    task_id: str | None = None
    """Use this id instead of a fresh UUIDv7 (also the idempotency key the task sees)."""
    countdown: float | None = None
    """Run no earlier than this many seconds from now."""
    eta: _dt.datetime | float | None = None
    """Run no earlier than this time (aware datetime or Unix timestamp)."""
    expires: float | None = None
    """Drop the message if it has not started within this many seconds of being due (publish time, or eta)."""
    priority: int | None = None
    """Higher runs first, where the broker supports priority (0-9 recommended)."""
    max_retries: int | None = None
    timeout: float | None = None
    dedup_key: str | None = None
    """Dedup on this key instead of on the arguments."""
    headers: dict[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        """The ``options`` object of the envelope: only the fields that were set."""
        out: dict[str, Any] = {}
        eta: float | None = None
        if self.eta is not None:
            if isinstance(self.eta, _dt.datetime):
                if self.eta.tzinfo is None:
                    raise ConfigError("eta must be a timezone-aware datetime (or a Unix timestamp)")
                eta = self.eta.timestamp()
            else:
                eta = float(self.eta)
        if self.countdown is not None:
            if self.countdown < 0:
                raise ConfigError(f"countdown={self.countdown!r}: must be >= 0")
            import time

            eta = time.time() + self.countdown
        if eta is not None:
            out["eta"] = eta
        for name in ("expires", "priority", "max_retries", "timeout", "dedup_key"):
            v = getattr(self, name)
            if v is not None:
                out[name] = v
        return out


# --- configuration sources ----------------------------------------------------------------------

_FIELD_TYPES: dict[str, Any] = {}


def default_data_dir() -> Path:
    env = os.environ.get("BOOSTKERNEL_DATA_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "boostkernel"


def _coerce(name: str, raw: str, default: Any) -> Any:
    """Turn an environment string into the type of the field's default."""
    raw_l = raw.strip().lower()
    if isinstance(default, bool):
        if raw_l in ("1", "true", "yes", "on"):
            return True
        if raw_l in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"BOOSTKERNEL_{name.upper()}={raw!r}: expected true/false")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"BOOSTKERNEL_{name.upper()}={raw!r}: expected an integer") from None
    if isinstance(default, float) or name in ("qps", "timeout", "expires", "dedup_ttl", "stats_interval"):
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"BOOSTKERNEL_{name.upper()}={raw!r}: expected a number") from None
    if isinstance(default, dict) or name in ("circuit_breaker", "quota"):
        import orjson

        try:
            v = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ConfigError(f"BOOSTKERNEL_{name.upper()}: expected JSON, got {raw!r}") from None
        return tuple(v) if isinstance(v, list) else v
    return raw


#: Fields that can never come from configuration (they are code, or per-booster identity).
_NOT_CONFIGURABLE = {"queue", "retry_on", "extra"}
_pyproject_cache: dict[str, dict[str, Any]] = {}


def pyproject_settings(start: Path | None = None) -> dict[str, Any]:
    """``[tool.boostkernel]`` of the nearest pyproject.toml at or above ``start`` (the working directory)."""
    here = (start or Path.cwd()).resolve()
    key = str(here)
    if key in _pyproject_cache:
        return _pyproject_cache[key]
    settings: dict[str, Any] = {}
    for d in (here, *here.parents):
        p = d / "pyproject.toml"
        if p.is_file():
            try:
                import tomllib  # type: ignore[import-not-found,unused-ignore]
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib  # type: ignore[no-redef,import-not-found,unused-ignore]
            with p.open("rb") as fh:
                data = tomllib.load(fh)
            section = data.get("tool", {}).get("boostkernel")
            if isinstance(section, dict):
                settings = section
                break
    _pyproject_cache[key] = settings
    return settings


def build_params(queue: str, given: Mapping[str, Any]) -> BoostParams:
    """Merge defaults < pyproject.toml < environment < ``given`` into validated :class:`BoostParams`."""
    known = {f.name: f for f in fields(BoostParams)}
    unknown = set(given) - set(known)
    if unknown:
        import difflib

        hints = []
        for u in sorted(unknown):
            close = difflib.get_close_matches(u, list(known), n=1)
            hints.append(f"{u!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(f"unknown @boost parameter(s) for queue {queue!r}: {', '.join(hints)}")
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, value in pyproject_settings().items():
        if name in known and name not in _NOT_CONFIGURABLE:
            merged[name] = tuple(value) if isinstance(value, list) else value
            sources[name] = "[tool.boostkernel] in pyproject.toml"
        elif name not in known and name != "queues":
            raise ConfigError(f"[tool.boostkernel] in pyproject.toml has an unknown key {name!r}")
    for name, f in known.items():
        if name in _NOT_CONFIGURABLE:
            continue
        raw = os.environ.get(f"BOOSTKERNEL_{name.upper()}")
        if raw is not None:
            default = f.default if f.default is not dataclasses.MISSING else {}
            merged[name] = _coerce(name, raw, default)
            sources[name] = f"BOOSTKERNEL_{name.upper()}"
    merged.update(given)
    sources.update((name, f"@boost({name}=...)") for name in given)
    merged["queue"] = queue
    params = BoostParams(**merged)
    params.__dict__["_sources"] = sources  # where each setting came from, for errors about mixed sources
    return params


def source_of(params: BoostParams, name: str) -> str:
    """Where setting ``name`` of ``params`` came from: ``@boost(...)``, an environment variable,
    pyproject.toml, or the default."""
    return str(params.__dict__.get("_sources", {}).get(name, "the default"))
