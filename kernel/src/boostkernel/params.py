"""Typed parameters of a booster (:class:`BoostParams`) and of one message (:class:`TaskOptions`).

Every parameter can be given to ``@boost(...)``, set by a ``BOOSTKERNEL_<NAME>`` environment variable
(e.g. ``BOOSTKERNEL_BROKER=redis``), or set in ``[tool.boostkernel]`` of the nearest pyproject.toml.
Precedence: argument > environment > pyproject.toml > default.

``BoostParams`` holds the core settings only. Every control plugin declares its own options (a dataclass,
see :mod:`boostkernel.options`); ``@boost`` accepts the options of every installed control, and a control
is *active* only when one of its options differs from its default, so controls that are off cost nothing
per message. ``params.qps`` (or ``params.option("qps")``) reads a control's option.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

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
    cpu_affinity: str | tuple[int, ...] | None = None
    """Keep each consuming process on one CPU (Linux): ``"one"`` picks it from the CPUs the process may run
    on, CPU ids (``[0, 1]`` or ``"0,2-3"``) pick it from those; the N children of ``processes=N`` spread
    over them (child i on the i-th, modulo their number). ``None``: affinity untouched. Pays off when a
    broker client runs its own network thread (nats, mqtt, pulsar, confluent-kafka); see
    docs/concurrency.md#cpu-affinity for when it hurts."""

    # --- results ------------------------------------------------------------------------------
    results: bool = False
    """Keep each task's result and status so ``AsyncResult.get()`` can return it."""
    result_ttl: float = 3600.0
    """Seconds a result is kept."""

    validate_args: bool = True
    """Check arguments against the function's signature at publish time."""
    max_deliveries: int = 3
    """A message whose worker died this many times while running it goes to the dead-letter queue."""
    signing_key: str | tuple[str, ...] | None = field(default=None, repr=False)
    """Sign every message published (HMAC-SHA256) and refuse unsigned or tampered ones into the dead-letter
    queue. Several keys separated by commas (or a list) rotate: the first signs, any verifies. See
    docs/signing.md."""

    # --- misc ---------------------------------------------------------------------------------
    group: str | None = None
    """Consume group: ``boostkernel worker MODULE --group NAME`` starts only boosters of this group."""
    log_level: str = "INFO"

    # --- controls ------------------------------------------------------------------------------
    controls: dict[str, Any] = field(default_factory=dict, repr=False)
    """The options of each installed control, by control name: instances of the options dataclass each
    control registers (``registry.add_control(..., options=...)``). Filled by :func:`build_params`."""

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
        if self.cpu_affinity is not None:
            if isinstance(self.cpu_affinity, str) and self.cpu_affinity.strip().lower() in ("", "none", "off"):
                self.cpu_affinity = None  # BOOSTKERNEL_CPU_AFFINITY=off overrides a setting from pyproject.toml
            else:
                from .affinity import parse

                parsed = parse(self.cpu_affinity, self.queue)
                if isinstance(self.cpu_affinity, list):
                    self.cpu_affinity = parsed
        if self.result_ttl <= 0:
            raise ConfigError(f"result_ttl={self.result_ttl!r}: must be > 0")
        if self.max_deliveries < 1:
            raise ConfigError(f"max_deliveries={self.max_deliveries!r}: must be >= 1")
        if self.signing_key is not None:
            from .signing import parse_keys

            if not isinstance(self.signing_key, (str, list, tuple)) or not parse_keys(self.signing_key):
                raise ConfigError(f"signing_key for queue {self.queue!r} holds no key: give a non-empty string "
                                  "(several keys separated by commas: the first signs, any verifies), or None "
                                  "to send unsigned messages")

    @property
    def effective_prefetch(self) -> int:
        # Twice the pool (at least 4): enough to batch broker round trips, few enough that a long
        # task does not hold many messages away from other workers.
        return max(4, 2 * self.workers) if self.prefetch is None else self.prefetch

    def resolved_data_dir(self) -> Path:
        return Path(self.data_dir) if self.data_dir else default_data_dir()

    def non_default(self, switches_only: bool = False) -> dict[str, Any]:
        """The core fields and control options whose values differ from their defaults."""
        from .options import non_default

        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "controls":
                continue
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING
            )
            v = getattr(self, f.name)
            if v != default:
                out[f.name] = v
        for opts in self.controls.values():
            out.update(non_default(opts, switches_only))
        return out

    def options(self, control: str) -> Any:
        """The options instance of ``control`` (an instance of the dataclass the control registered)."""
        try:
            return self.controls[control]
        except KeyError:
            raise ConfigError(f"no installed control {control!r} with options on queue {self.queue!r}") from None

    def option(self, name: str) -> Any:
        """The value of the control option ``name`` (e.g. ``"qps"``) on this booster."""
        for opts in self.controls.values():
            if name in opts.__dataclass_fields__:
                return getattr(opts, name)
        raise AttributeError(f"{name!r} is neither a core setting of BoostParams nor an option of an installed "
                             "control")

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not core fields: read a control's option (``params.qps``).
        if name.startswith("_") or name == "controls":
            raise AttributeError(name)
        return self.option(name)


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
    overrides: dict[str, Any] | None = None
    """Per-message values of control options declared ``per_message`` (``{"max_retries": 5}``); checked
    at publish against the option's type, and refused when its control is off on the booster."""

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
        if self.overrides:
            out.update(self.overrides)
        return out


# --- configuration sources ----------------------------------------------------------------------


def default_data_dir() -> Path:
    env = os.environ.get("BOOSTKERNEL_DATA_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "boostkernel"


#: Fields that can never come from configuration (they are code, or per-booster identity).
_NOT_CONFIGURABLE = {"queue", "controls"}
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


def source_of(params: BoostParams, name: str) -> str:
    """Where setting ``name`` of ``params`` came from: ``@boost(...)``, an environment variable,
    pyproject.toml, or the default (recorded by :func:`boostkernel.config.build_params`)."""
    return str(params.__dict__.get("_sources", {}).get(name, "the default"))
