"""Base class and helpers of *framework brokers*: celery, dramatiq, huey, rq … used as a broker.

A framework broker (``capabilities.needs_own_worker=True``) does not expose fetch/ack to the kernel: the
framework publishes, its own worker consumes, retries, delays and rate-limits. The kernel's side of the
contract (documented on :class:`~boostkernel.broker.Broker`) is four class methods:

* ``setup_booster(booster)`` — at decoration: check the parameters, register the task with the framework;
* ``start_worker(boosters) -> FrameworkWorker`` — start the framework's worker for these boosters in the
  background and return at once (``Booster.consume()``); the handle's ``stop()`` stops it;
* ``run_worker(boosters)`` — the same for ``boostkernel worker`` (the kernel then waits for SIGTERM);
* ``publish(outgoing)`` — the kernel's encoded envelope; :class:`FrameworkBroker` decodes it and calls
  :meth:`FrameworkBroker.send` with the :class:`~boostkernel.message.Envelope`.

:class:`FrameworkBroker` implements the parts every framework shares: parameter checking (each plugin
lists the control options it maps onto the framework's own options in ``framework_params``; any other
control parameter fails at decoration time), the choice of the result store, registration of worker
handles with the process (so SIGTERM and ``wait_for_consumers`` include them) and :func:`run_task`, which
runs the user's function inside the framework's task with the kernel's task context and result records.
"""

from __future__ import annotations

import abc
import asyncio
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from .broker import Broker, BrokerCapabilities, DeadLetterRecord, Delivery, Outgoing
from .context import Outcome, TaskContext, _current, worker_id
from .control import overrides
from .errors import ConfigError
from .logs import current_task_id
from .message import Envelope, decode
from .params import BoostParams

if TYPE_CHECKING:
    from .booster import Booster
    from .control import Control

#: ``BoostParams`` fields that are not control parameters: every framework broker accepts them.
COMMON_PARAMS = frozenset({
    "queue", "broker", "broker_url", "broker_options", "store", "store_url", "data_dir", "concurrency",
    "workers", "processes", "prefetch", "results", "result_ttl", "validate_args", "group", "log_level",
    "max_deliveries", "extra",
})


class FrameworkWorker:
    """Handle of a framework worker running in the background (returned by ``start_worker``).

    Subclasses implement :meth:`_stop`. The handle quacks like a kernel consumer (``running``,
    ``stop(timeout)``, ``stopped``) so the process-wide shutdown and ``wait_for_consumers`` include it.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.boosters: list[Booster[Any, Any]] = []
        self.running = True
        self.stopped = threading.Event()
        self._stop = threading.Event()
        self._stop_lock = threading.Lock()

    def request_stop(self) -> None:
        """Ask the worker to stop (returns at once); :meth:`stop` waits for it."""
        self._stop.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking new tasks, let running ones finish (at most ``timeout`` seconds). Idempotent."""
        with self._stop_lock:
            if not self.running:
                return
            self._stop.set()
            try:
                self._stop_worker(timeout)
            finally:
                self.running = False
                self.stopped.set()

    @abc.abstractmethod
    def _stop_worker(self, timeout: float) -> None: ...

    @property
    def booster(self) -> Booster[Any, Any] | None:
        """The first booster served (the kernel's mode checks look at ``consumer.booster``)."""
        return self.boosters[0] if self.boosters else None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} running={self.running}>"


class GroupWorker(FrameworkWorker):
    """Several framework workers stopped together (e.g. one per broker URL)."""

    def __init__(self, name: str, parts: Sequence[FrameworkWorker]) -> None:
        super().__init__(name)
        self.parts = list(parts)

    def _stop_worker(self, timeout: float) -> None:
        threads = [threading.Thread(target=p.stop, args=(timeout,)) for p in self.parts]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout + 5)


def register_worker(handle: FrameworkWorker) -> None:
    """Make SIGTERM/SIGINT stop ``handle`` and ``wait_for_consumers()`` wait for it."""
    from .running import add_consumer
    from .signals import install_signal_handlers

    add_consumer(handle)
    install_signal_handlers()


class FrameworkBroker(Broker):
    """Base class of framework brokers. Subclasses set ``name``, ``framework_params``, ``option_names`` and
    implement ``register``, ``send``, ``_start_worker`` (and ``count``/``purge`` where the framework allows)."""

    capabilities: ClassVar[BrokerCapabilities] = BrokerCapabilities(
        ack=False, requeue=False, dead_letter=False, needs_own_worker=True, count=True, purge=True,
    )
    default_url: ClassVar[str | None] = "redis://127.0.0.1:6379/0"
    #: Not used as such: ``setup_booster`` always sets ``params.store`` (see :meth:`pick_store`).
    default_store: ClassVar[str] = "redis"
    #: Control options the framework implements itself (retries, time limits …). The kernel
    #: loads no control plugin for them; any *other* control parameter fails at decoration time.
    framework_params: ClassVar[frozenset[str]] = frozenset()
    #: Why a parameter cannot be honoured (shown in the decoration-time error), by field name.
    unsupported_reasons: ClassVar[Mapping[str, str]] = {}
    #: Keys accepted in ``broker_options`` (documented in the plugin's README).
    option_names: ClassVar[frozenset[str]] = frozenset()
    #: URL schemes the framework can use as its transport.
    url_schemes: ClassVar[tuple[str, ...]] = ("redis", "rediss")

    # --- the framework-broker contract ----------------------------------------------------------
    @classmethod
    def setup_booster(cls, booster: Booster[Any, Any]) -> None:
        """Validate ``booster.params`` for this framework, pick the result store, register the task."""
        p = booster.params
        cls.check_params(p)
        if p.broker_url is None:
            p.broker_url = cls.default_url
        if p.store is None:
            p.store = cls.pick_store(p)
        booster.framework_task = cls.register(booster)  # type: ignore[attr-defined]

    @classmethod
    def check_params(cls, p: BoostParams) -> None:
        for name in sorted(p.non_default()):
            if name in COMMON_PARAMS or name in cls.framework_params:
                continue
            reason = cls.unsupported_reasons.get(name) or f"{cls.name} has no equivalent of it"
            raise ConfigError(
                f"@boost({p.queue!r}, broker={cls.name!r}): parameter {name}="
                f"{'***' if name == 'signing_key' else repr(getattr(p, name))} cannot be "
                f"honoured: {reason}. {cls.name} supports: {', '.join(sorted(cls.framework_params)) or 'none'}"
            )
        unknown = set(p.broker_options) - cls.option_names
        if unknown:
            raise ConfigError(
                f"@boost({p.queue!r}, broker={cls.name!r}): unknown broker_options {sorted(unknown)}; "
                f"{cls.name} accepts {sorted(cls.option_names)}"
            )
        url = p.broker_url or cls.default_url or ""
        scheme = url.split("://", 1)[0].lower()
        if scheme not in cls.url_schemes:
            from .logs import mask_url

            raise ConfigError(
                f"@boost({p.queue!r}, broker={cls.name!r}): broker_url {mask_url(url)!r} is not usable by "
                f"{cls.name}; give a URL with scheme {' or '.join(cls.url_schemes)}, e.g. "
                f"broker_url='redis://127.0.0.1:6379/0'"
            )
        cls.check_framework_params(p)

    @classmethod
    def check_framework_params(cls, p: BoostParams) -> None:
        """Framework-specific checks of the mapped parameters (override)."""

    @classmethod
    def pick_store(cls, p: BoostParams) -> str:
        """The result store when the booster names none: ``redis`` on the broker's Redis when the Redis store
        plugin is installed and the broker URL is a Redis URL, else the host-local ``sqlite`` store."""
        from .plugins import get_plugins

        url = p.broker_url or ""
        plugins = get_plugins()
        if url.split("://", 1)[0].lower() in ("redis", "rediss") and "redis" in plugins.names("store"):
            try:
                plugins.get("store", "redis").load()
            except Exception:  # noqa: BLE001 - an unusable Redis store plugin: fall back to the host-local one
                return "sqlite"
            if p.store_url is None:
                p.store_url = url
            return "redis"
        return "sqlite"

    @classmethod
    @abc.abstractmethod
    def register(cls, booster: Booster[Any, Any]) -> Any:
        """Register the booster's task with the framework; return the framework's task object."""

    @classmethod
    def start_worker(cls, boosters: Sequence[Booster[Any, Any]]) -> FrameworkWorker:
        """Start the framework's worker for ``boosters`` in the background and return its handle at once."""
        handle = cls._start_worker(list(boosters))
        handle.boosters = list(boosters)
        register_worker(handle)
        return handle

    @classmethod
    def run_worker(cls, boosters: Sequence[Booster[Any, Any]]) -> None:
        """``boostkernel worker``: start the framework's worker for ``boosters``; the kernel waits for it and
        stops it on SIGTERM/SIGINT."""
        cls.start_worker(boosters)

    @classmethod
    @abc.abstractmethod
    def _start_worker(cls, boosters: list[Booster[Any, Any]]) -> FrameworkWorker: ...

    # --- publishing -----------------------------------------------------------------------------
    #: Per-message ``TaskOptions`` the framework honours (the others raise ``ConfigError`` at publish).
    message_options: ClassVar[frozenset[str]] = frozenset({"eta", "expires"})

    def publish(self, message: Outgoing) -> None:
        env = decode(message.body, self.queue)
        if env.options:
            extra = set(env.options) - self.message_options
            if extra:
                raise ConfigError(
                    f"queue {self.queue!r}: broker {self.name!r} cannot honour the per-message option(s) "
                    f"{sorted(extra)}; it honours {sorted(self.message_options)} (set retries and time limits "
                    "on @boost instead)"
                )
        self.send(env)

    @abc.abstractmethod
    def send(self, env: Envelope) -> None:
        """Publish one call through the framework's own API (task id, args, kwargs, eta, priority …)."""

    # --- no raw consumption -----------------------------------------------------------------------
    def _no_raw(self) -> NotImplementedError:
        return NotImplementedError(f"broker {self.name!r} is a whole framework: its own worker consumes "
                                   "(use booster.consume() or `boostkernel worker`)")

    def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        raise self._no_raw()

    def ack(self, delivery: Delivery) -> None:
        raise self._no_raw()

    def nack(self, delivery: Delivery, requeue: bool = True, delay: float = 0.0) -> None:
        raise self._no_raw()

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        raise self._no_raw()

    def dead_letters(self, limit: int = 100) -> list[DeadLetterRecord]:
        raise self._no_raw()


def worker_count(boosters: Sequence[Booster[Any, Any]]) -> int:
    """Threads of a framework worker serving ``boosters``: the largest ``workers`` among them."""
    return max(b.params.workers for b in boosters)


def by_url(boosters: Sequence[Booster[Any, Any]]) -> dict[str, list[Booster[Any, Any]]]:
    out: dict[str, list[Booster[Any, Any]]] = {}
    for b in boosters:
        out.setdefault(b.params.broker_url or "", []).append(b)
    return out


def eta_of(env: Envelope) -> float | None:
    """The envelope's eta as a Unix time, or ``None`` when due now (an eta in the past counts as now)."""
    eta = env.eta
    if eta is None or eta <= time.time():
        return None
    return eta


class TaskRunner:
    """Runs the user's function inside a framework task: task context, async functions, result records.

    One per booster, built at first use in the worker. ``run`` is the per-message path: no hook dispatch.
    """

    __slots__ = ("booster", "fn", "is_async", "befores", "afters", "retry_on", "max_retries")

    def __init__(self, booster: Booster[Any, Any]) -> None:
        self.booster = booster
        self.fn = booster.fn
        self.is_async = booster.is_async
        controls: list[Control] = booster.make_controls()
        self.befores = [c.before for c in controls if overrides(c, "before")]
        self.afters = [c.after for c in controls if overrides(c, "after")]
        self.retry_on: tuple[type[BaseException], ...] = getattr(booster.params, "retry_on", (Exception,))
        self.max_retries: int = getattr(booster.params, "max_retries", 0)
        from .logs import install_task_record_factory

        install_task_record_factory()

    def will_retry(self, exc: BaseException, attempt: int) -> bool:
        """Whether the framework will run the task again after ``exc`` on attempt ``attempt`` (0-based)."""
        return attempt < self.max_retries and isinstance(exc, self.retry_on)

    def run(self, task_id: str, args: Sequence[Any], kwargs: dict[str, Any], attempt: int = 0,
            published_at: float | None = None, retrying: Callable[[BaseException], bool] | None = None) -> Any:
        """Call the function; record the outcome; re-raise a failure so the framework sees it.

        ``retrying(exc)`` tells whether the framework will retry after ``exc`` (default: :meth:`will_retry`),
        so a failure that will be retried writes no final record.
        """
        env = Envelope(self.booster.queue, list(args), kwargs, id=task_id, attempt=attempt,
                       published_at=published_at)
        ctx = TaskContext(env, None, self.booster, worker_id())
        token = _current.set(ctx)
        tid = current_task_id.set(task_id)
        try:
            for b in self.befores:
                b(ctx)
            codec = self.booster.codec
            if codec.any_typed:  # annotated datetime, UUID … are rebuilt (as on every broker)
                codec.decode_args(env.args, env.kwargs)
            if self.is_async:
                result = asyncio.run(self.fn(*env.args, **env.kwargs))
            else:
                result = self.fn(*env.args, **env.kwargs)
            if self.booster.params.results:  # a result no process could read back as it was is a failure
                result = codec.encode_result(result)
            ctx.result = result
            ctx.status = Outcome.SUCCESS
            return result
        except BaseException as exc:
            ctx.exception = exc
            again = retrying(exc) if retrying is not None else self.will_retry(exc, attempt)
            ctx.status = Outcome.RETRY if again else Outcome.FAILURE
            ctx.state["traceback"] = traceback.format_exc()
            raise
        finally:
            ctx.finished_at = time.time()
            for a in self.afters:
                try:
                    a(ctx)
                except Exception:  # noqa: BLE001 - a failed record never loses the task's outcome
                    import logging

                    logging.getLogger("boostkernel.framework").exception("after-hook failed for %s", task_id)
            current_task_id.reset(tid)
            _current.reset(token)
