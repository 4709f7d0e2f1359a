"""``@boost`` and the :class:`Booster` it returns."""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar, overload

from .broker import Broker, Lazy, Outgoing
from .catalog import KNOWN_METHODS, KNOWN_OPTIONS
from .config import build_params, fill_controls
from .consumer import Consumer, start_consumer
from .control import Control, overrides
from .errors import ConfigError, MessageRejected, PluginNotInstalled
from .message import MAX_MESSAGE_BYTES, Envelope, TypeCodec
from .overlay import ProcessGroup, start_processes
from .params import BoostParams, TaskOptions
from .plugins import Registration, get_plugins
from .registry import REGISTRY, register_booster
from .results import AsyncResult
from .signals import wait_for_consumers
from .signing import Signer, parse_keys, sign_envelope

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .kwargs import BoostKwargs
    from .methods import PluginMethods as _PluginMethods
    from .store import Store

__all__ = ["Booster", "AsyncBooster", "BoostDecorator", "BoundBooster", "boost", "REGISTRY", "open_store", "instance_state"]

P = ParamSpec("P")
R = TypeVar("R")


#: ``TaskOptions`` fields that set a control's option for one message: field -> (the option whose control
#: must be on, the ``@boost`` argument that switches it on). ``overrides={...}`` follows the same rule.
_CONTROL_FIELDS: dict[str, tuple[str, str]] = {
    "expires": ("expires", "expires=3600"), "max_retries": ("max_retries", "max_retries=3"),
    "timeout": ("timeout", "timeout=60"), "dedup_key": ("dedup", "dedup=True"),
}


if TYPE_CHECKING:  # the in-tree plugins' booster methods, typed (boostkernel.methods); none at run time
    _Methods = _PluginMethods
else:
    class _Methods:  # defines nothing: Booster.__getattr__ finds the plugins' methods
        __slots__ = ()


class Booster(_Methods, Generic[P, R]):
    """A function bound to a queue. Call it to run it locally; ``push`` it to run it on a worker."""

    def __init__(self, fn: Callable[P, R], params: BoostParams) -> None:
        self.fn = fn
        self.params = params
        self.queue = params.queue
        functools.update_wrapper(self, fn)
        self.is_async = inspect.iscoroutinefunction(fn)
        try:  # resolve string annotations so error messages read naturally
            self.signature = inspect.signature(fn, eval_str=True)
        except Exception:  # noqa: BLE001 - unresolvable forward references: keep them as strings
            self.signature = inspect.signature(fn)
        # Fast path of publish-time validation: a call with exactly this many positional arguments and no
        # keywords always binds when every parameter is plain positional-or-keyword without a default.
        ps = list(self.signature.parameters.values())
        self._plain_arity = len(ps) if all(
            p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty for p in ps) else -1
        self._lock = threading.RLock()
        self._broker: Lazy[Broker] = Lazy(self.make_broker)
        self._store: Lazy[Store] = Lazy(lambda: open_store(self.params, self.broker_class.default_store))
        self._consumer: Consumer | None = None
        self._processes: ProcessGroup | None = None
        self._codec: TypeCodec | None = None
        #: Signs every envelope published when ``signing_key`` is set (docs/signing.md); None: no work at all.
        self.signer: Signer | None = Signer(parse_keys(params.signing_key)) if params.signing_key else None

        plugins = get_plugins()
        self.broker_name = plugins.resolve_broker_name(params.broker)
        broker_reg = plugins.get("broker", self.broker_name)
        self.broker_class: type[Broker] = broker_reg.load()
        if params.broker_url is None and "://" in params.broker:
            params.broker_url = params.broker
        _check_url_fits(params, self.broker_name, broker_reg.schemes)
        if not self.broker_class.capabilities.needs_own_worker:
            self.executor_class = plugins.get("executor", params.concurrency).load()
            caps = self.executor_class.capabilities
            if self.is_async and not caps.async_functions:
                raise ConfigError(
                    f"{fn.__qualname__} is an async function but concurrency={params.concurrency!r} runs only "
                    "plain functions; use concurrency='asyncio' (or make the function synchronous)"
                )
        if not params.controls:  # a BoostParams built by hand: every installed control at its defaults
            fill_controls(params)
        set_params = set(params.non_default(switches_only=True))
        if self.broker_class.capabilities.needs_own_worker:
            # the framework implements these itself (retries, time limits …): no kernel control for them
            set_params -= set(getattr(self.broker_class, "framework_params", ()))
        self.control_registrations: list[Registration] = plugins.controls_for(set_params)
        self.control_classes: list[type[Control]] = [reg.load() for reg in self.control_registrations]
        for cls in self.control_classes:
            cls.check(self)
        self._publish_controls: list[Callable[[Envelope], None]] | None = None
        if hasattr(self.broker_class, "setup_booster"):  # framework brokers register their task here
            self.broker_class.setup_booster(self)
        elif getattr(self.broker_class, "check_at_decoration", False):
            self.broker_class(self.queue, self.params.broker_url, self.params)
        register_booster(self)

    # --- local call and methods-as-tasks --------------------------------------------------------
    #: ``None`` for a plain function; ``"instance"``, ``"class"`` or ``"static"`` for a method (see
    #: docs/controls/core.md "Methods as tasks"). Set when the class body that defines it is created.
    method_kind: str | None = None
    #: The class that defines the method (``None`` for a plain function).
    owner: type | None = None

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if self.method_kind == "class":
            return self.fn(self.owner, *args, **kwargs)  # type: ignore[arg-type]
        return self.fn(*args, **kwargs)

    def __set_name__(self, owner: type, name: str) -> None:
        # Called when the class body that holds this booster is created. Only a function *defined* in that
        # body is a method; a plain booster merely stored as a class attribute stays a plain function.
        if not self.fn.__qualname__.startswith(f"{owner.__qualname__}."):
            return
        self.owner = owner
        if self.method_kind is None:
            self.method_kind = "instance"

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        # ``instance.method`` is a BoundBooster: calling runs locally, ``push`` records the instance's state.
        if obj is None or self.method_kind != "instance":
            return self
        return BoundBooster(self, obj)

    @property
    def codec(self) -> TypeCodec:
        """How arguments and results cross the wire (JSON; annotated datetime, UUID … rebuilt)."""
        if self._codec is None:
            self._codec = TypeCodec(self.fn.__qualname__, self.signature, 1 if self.method_kind == "class" else 0)
        return self._codec

    # --- lazily created parts -------------------------------------------------------------------
    def make_broker(self) -> Broker:
        """A new broker instance for this queue (the consumer gets its own)."""
        return self.broker_class(self.queue, self.params.broker_url, self.params)

    @property
    def broker(self) -> Broker:
        """The broker instance used for publishing, count and purge."""
        return self._broker.get()

    @property
    def store(self) -> Store:
        """The store for results and coordination (``store=`` or the broker's companion store)."""
        return self._store.get()

    def make_controls(self) -> list[Control]:
        return [cls(self) for cls in self.control_classes]

    # --- publishing -----------------------------------------------------------------------------
    def _validate(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        bound = self.method_kind == "class"
        if not kwargs and len(args) + bound == self._plain_arity:
            return
        try:
            if bound:
                self.signature.bind(None, *args, **kwargs)
            else:
                self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.fn.__name__}{self.signature}: {exc}") from None

    def _envelope(self, args: Sequence[Any], kwargs: dict[str, Any], options: TaskOptions | None) -> Envelope:
        if self.params.validate_args:
            self._validate(args, kwargs)
        args = list(args)
        (self._codec or self.codec).encode_args(args, kwargs)
        opts = options.to_wire() if options is not None else {}
        if opts and options is not None and options.priority and not self.honours_priority():
            raise ConfigError(
                f"TaskOptions(priority=...) on queue {self.queue!r}: broker {self.broker_name!r} does not order "
                "messages by priority here, so the option would be ignored. Use a broker that does (sqlite, memory, "
                "redis, rabbitmq; see `boostkernel plugins list`), or leave priority unset")
        if opts and options is not None and (options.overrides or not _CONTROL_FIELDS.keys().isdisjoint(opts)):
            self._check_message_options(options)
        headers = options.headers if options is not None and options.headers else None
        env = Envelope(self.queue, args, kwargs, id=options.task_id if options else None,
                       options=opts, headers=headers)
        if self._publish_controls is None:
            self._publish_controls = [c.on_publish for c in self.make_controls() if overrides(c, "on_publish")]
        for hook in self._publish_controls:
            hook(env)
        return env

    def honours_priority(self) -> bool:
        """Whether this booster's broker orders messages by ``TaskOptions(priority=...)``: the broker class's
        ``honours_priority(params)`` when it has one (it depends on the URL or options), else its
        ``capabilities.priority``."""
        hook = getattr(self.broker_class, "honours_priority", None)
        return bool(hook(self.params)) if hook is not None else self.broker_class.capabilities.priority

    def _check_message_options(self, options: TaskOptions) -> None:
        """Per-message values of control options (``TaskOptions(timeout=..., max_retries=..., expires=...,
        dedup_key=...)`` and ``overrides={...}``): each must be a per-message option of an installed control,
        of its type, and that control must be on for this booster, else the value would be silently ignored.
        A value equal to the option's default needs no control (``max_retries=0``)."""
        from .options import matches

        infos = get_plugins().control_options()
        active = {reg.name for reg in self.control_registrations}
        if self.broker_class.capabilities.needs_own_worker:  # the framework implements these itself
            honoured = set(getattr(self.broker_class, "framework_params", ())) & set(self.params.non_default())
        else:
            honoured = set()
        # (how it was given, the option, its value (None: not a value of the option), the @boost argument)
        values: list[tuple[str, str, Any, str]] = []
        for field_name, (name, example) in _CONTROL_FIELDS.items():
            value = getattr(options, field_name)
            if value is not None:
                values.append((f"TaskOptions({field_name}=...)", name, value if field_name == name else None, example))
        for name, value in (options.overrides or {}).items():
            values.append((f"TaskOptions(overrides={{{name!r}: ...}})", name, value, f"{name}=..."))
        for given, name, value, example in values:
            info = infos.get(name)
            fix = f"switch it on with @boost({self.queue!r}, {example}, ...)"
            override = given.startswith("TaskOptions(overrides=")
            if info is None or (override and not info.per_message):
                if override:
                    allowed = sorted(n for n, i in infos.items() if i.per_message)
                    raise ConfigError(f"{given}: {name!r} is not a per-message option of an installed control "
                                      f"(per-message options: {', '.join(allowed)})")
                plugin = KNOWN_OPTIONS.get(name)
                how = f'install it with: pip install "boostkernel[{plugin}]"' if plugin else fix
                raise ConfigError(f"{given} needs the control that declares option {name!r}, which is not "
                                  f"installed, so the value would be ignored: {how}")
            if value is not None and not matches(value, info.annotation):
                raise ConfigError(f"{given.replace('...', repr(value))}: must be {info.type}")
            cap = getattr(self.params, f"{name}_cap", None) if value is not None else None
            if cap is not None and value > cap:  # the booster caps what one message may ask for
                raise ConfigError(f"{given.replace('...', repr(value))} exceeds {name}_cap={cap!r} set on queue "
                                  f"{self.queue!r}: ask for at most {cap!r}, or raise the booster's {name}_cap")
            if info.control in active or name in honoured or (value is not None and value == info.default):
                continue
            raise ConfigError(f"{given} needs the {info.control!r} control on queue {self.queue!r}, which is off, "
                              f"so the value would be ignored: {fix}")

    def encode(self, env: Envelope) -> bytes:
        """The bytes of ``env`` on the wire: signed when the booster has a ``signing_key``."""
        body = env.encode()
        return body if self.signer is None else sign_envelope(self.signer, body)

    def _outgoing(self, env: Envelope) -> Outgoing:
        body = self.encode(env)
        if len(body) > MAX_MESSAGE_BYTES:
            raise MessageRejected(f"message of {len(body)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit "
                                  "(BOOSTKERNEL_MAX_MESSAGE_BYTES); pass a reference to the data instead")
        return Outgoing(env.id, body, env.priority, env.eta)

    def message(self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None,
                options: TaskOptions | None = None) -> Outgoing:
        """The message a publish of this call would send, validated and encoded, without publishing it
        (signature, JSON, size, per-message options and the controls' ``on_publish``)."""
        return self._outgoing(self._envelope(args, dict(kwargs or {}), options))

    def push(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult[R]:
        """Publish a call of the function with these arguments; return its :class:`AsyncResult`."""
        env = self._envelope(args, kwargs, None)
        self.broker.publish(self._outgoing(env))
        return AsyncResult(env.id, self)

    delay = push  # celery's name

    def publish(self, kwargs: Mapping[str, Any] | None = None, options: TaskOptions | None = None, /,
                *, args: Sequence[Any] = ()) -> AsyncResult[R]:
        """Publish with keyword arguments as a dict and per-message :class:`TaskOptions`."""
        env = self._envelope(args, dict(kwargs or {}), options)
        self.broker.publish(self._outgoing(env))
        return AsyncResult(env.id, self)

    def push_many(self, calls: Iterable[Sequence[Any] | Mapping[str, Any]], *, options: TaskOptions | None = None,
                  chunk_size: int = 1000) -> list[AsyncResult[R]]:
        """Publish many calls: each item is an argument tuple/list or a kwargs dict. Batched by the broker.

        Every call is validated and encoded before the first is published: a bad item raises (naming its
        index) and nothing is sent."""
        out: list[Outgoing] = []
        for i, call in enumerate(calls):
            try:
                if isinstance(call, Mapping):
                    env = self._envelope((), dict(call), options)
                else:
                    env = self._envelope(tuple(call), {}, options)
                out.append(self._outgoing(env))
            except (TypeError, ValueError, MessageRejected) as exc:
                raise _item_error(exc, i) from None
        return _publish_chunks(self, out, chunk_size)

    async def aio_push(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult[R]:
        import asyncio

        return await asyncio.to_thread(lambda: self.push(*args, **kwargs))

    async def aio_publish(self, kwargs: Mapping[str, Any] | None = None, options: TaskOptions | None = None
                          ) -> AsyncResult[R]:
        import asyncio

        return await asyncio.to_thread(self.publish, kwargs, options)

    # --- consuming ------------------------------------------------------------------------------
    def consume(self) -> Booster[P, R]:
        """Start consuming in background threads of this process (or ``processes`` children); return at once."""
        if self.params.processes > 1:
            return self.multi_process_consume(self.params.processes)
        if self.params.cpu_affinity is not None:  # once, before the consumer's threads start
            from .affinity import pin_process

            pin_process(self.params.cpu_affinity)
        if self.broker_class.capabilities.needs_own_worker:  # the framework's worker, in the background
            with self._lock:
                if self._consumer is None or not self._consumer.running:
                    self._consumer = self.broker_class.start_worker([self])  # type: ignore[attr-defined]
            return self
        with self._lock:
            if self._consumer is None or not self._consumer.running:
                self._consumer = start_consumer(self)
        return self

    def multi_process_consume(self, processes: int) -> Booster[P, R]:
        """Consume in ``processes`` child processes, each with its own pool of this booster's concurrency."""
        with self._lock:
            if self._processes is None or not self._processes.running:
                self._processes = start_processes([self.queue], processes, module=self.fn.__module__)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop consuming gracefully: finish running tasks, return prefetched messages (children too)."""
        consumer, group = self._consumer, self._processes
        if group is not None:
            group.terminate()
        if consumer is not None:
            consumer.stop(timeout)
        if group is not None:
            group.stop(timeout)

    def wait(self) -> None:
        """Block until this booster's consumer stops (Ctrl-C / SIGTERM stop it gracefully)."""
        wait_for_consumers()

    # --- queue management -----------------------------------------------------------------------
    def count(self) -> int:
        """Messages waiting in the queue."""
        return self.broker.count()

    def purge(self) -> int:
        """Delete every waiting message; return how many."""
        return self.broker.purge()

    def dead_letters(self, limit: int = 100) -> list[Any]:
        return self.broker.dead_letters(limit)

    def replay_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        return self.broker.replay_dead_letters(ids)

    # --- methods added by plugins (pause/resume, revoke, schedule …) ------------------------------------
    def __getattr__(self, name: str) -> Any:
        # Only reached for names the class does not define: methods registered by plugins with
        # ``registry.add_booster_method`` (docs/plugins.md), e.g. ``pause`` from boostkernel-pause.
        if name.startswith("_"):
            raise AttributeError(name)
        fn = get_plugins().booster_method(name)
        if fn is not None:
            return functools.partial(fn, self)
        plugin = KNOWN_METHODS.get(name)
        if plugin is not None:
            def missing(*args: Any, **kwargs: Any) -> Any:
                raise PluginNotInstalled("control", plugin, hint=f'Booster.{name}() needs it: '
                                                                 f'pip install "boostkernel[{plugin}]"')
            return missing
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def result(self, task_id: str) -> AsyncResult[R]:
        """The :class:`AsyncResult` of a task id (from another process, a log line …)."""
        return AsyncResult(task_id, self)

    def __repr__(self) -> str:
        return f"<Booster {self.fn.__qualname__} queue={self.queue!r} broker={self.broker_name!r}>"


class AsyncBooster(Booster[P, R]):
    """A booster of an ``async def`` function: the same at run time; for type checkers, ``R`` is what the
    coroutine returns (``AsyncResult[R].get()`` returns it) and a local call returns the coroutine."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:  # type: ignore[override]
        return super().__call__(*args, **kwargs)  # type: ignore[return-value]


class BoostDecorator(Protocol):
    """What ``boost(...)`` returns: applied to ``async def`` it gives an :class:`AsyncBooster`."""

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> AsyncBooster[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, R], /) -> Booster[P, R]: ...


def instance_state(obj: Any) -> dict[str, Any]:
    """The JSON-serialisable keyword arguments that rebuild ``obj`` on a worker: ``type(obj)(**state)``.

    From ``obj.boost_state()`` if the class defines it, else from a dataclass's init fields.
    """
    getter = getattr(obj, "boost_state", None)
    if callable(getter):
        state = getter()
    else:
        import dataclasses

        if not dataclasses.is_dataclass(obj):
            raise TypeError(
                f"{type(obj).__qualname__} instances cannot be sent to a worker: define "
                f"boost_state(self) -> dict returning the keyword arguments that rebuild the object "
                f"({type(obj).__qualname__}(**state)), or make it a dataclass")
        state = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init}
    if not isinstance(state, dict):
        raise TypeError(f"{type(obj).__qualname__}.boost_state() must return a dict, not {type(state).__name__}")
    return state


class BoundBooster:
    """``instance.method`` for a booster defined on a method: call it locally, or ``push`` it.

    ``push`` records the instance's state (:func:`instance_state`) as the first argument of the message;
    the worker rebuilds the instance with ``Class(**state)`` for every message (never pickle).
    """

    __slots__ = ("booster", "obj")

    def __init__(self, booster: Booster[Any, Any], obj: Any) -> None:
        self.booster, self.obj = booster, obj

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.booster.fn(self.obj, *args, **kwargs)

    def push(self, *args: Any, **kwargs: Any) -> AsyncResult[Any]:
        return self.booster.push(instance_state(self.obj), *args, **kwargs)

    delay = push

    def publish(self, kwargs: Mapping[str, Any] | None = None, options: TaskOptions | None = None, /,
                *, args: Sequence[Any] = ()) -> AsyncResult[Any]:
        return self.booster.publish(kwargs, options, args=(instance_state(self.obj), *args))

    def push_many(self, calls: Iterable[Sequence[Any] | Mapping[str, Any]], *, options: TaskOptions | None = None,
                  chunk_size: int = 1000) -> list[AsyncResult[Any]]:
        state, b = instance_state(self.obj), self.booster
        out: list[Outgoing] = []
        for i, call in enumerate(calls):
            try:
                if isinstance(call, Mapping):
                    env = b._envelope((state,), dict(call), options)
                else:
                    env = b._envelope((state, *call), {}, options)
                out.append(b._outgoing(env))
            except (TypeError, ValueError, MessageRejected) as exc:
                raise _item_error(exc, i) from None
        return _publish_chunks(b, out, chunk_size)

    def __getattr__(self, name: str) -> Any:  # count, purge, consume, result … of the booster
        return getattr(self.booster, name)

    def __repr__(self) -> str:
        return f"<BoundBooster {self.booster.fn.__qualname__} of {self.obj!r}>"


def _check_url_fits(params: BoostParams, broker_name: str, schemes: tuple[str, ...]) -> None:
    """The merged configuration must agree with itself: a broker that declares its URL schemes cannot be
    given another scheme's URL (e.g. ``BOOSTKERNEL_BROKER=sqlite`` with a ``redis://`` URL from pyproject.toml).
    Checked at decoration, not at the first push."""
    from .logs import mask_url
    from .params import source_of

    url = params.broker_url
    if not url or not schemes or "://" not in url:
        return
    scheme = url.split("://", 1)[0].lower()
    if scheme in schemes:
        return
    src_b, src_u = source_of(params, "broker"), source_of(params, "broker_url")
    if "://" in params.broker:
        src_u = src_b
    raise ConfigError(
        f"queue {params.queue!r}: broker {broker_name!r} (from {src_b}) cannot use the URL {mask_url(url)!r} "
        f"(from {src_u}): it takes {', '.join(s + '://' for s in schemes)} URLs. Settings are merged from "
        "@boost arguments > BOOSTKERNEL_* environment variables > [tool.boostkernel] in pyproject.toml; set the "
        f"broker and its URL in the same place, or choose the broker that handles {scheme}:// URLs")


def _item_error(exc: Exception, i: int) -> Exception:
    """``exc`` with the failing push_many item named (the same type, so callers catch it as before)."""
    try:
        return type(exc)(f"push_many item {i}: {exc} (nothing was published)")
    except Exception:  # noqa: BLE001 - an exception type with another constructor: keep it as it is
        return exc


def _publish_chunks(b: Booster[Any, Any], out: list[Outgoing], chunk_size: int) -> list[AsyncResult[Any]]:
    """Publish already validated messages, ``chunk_size`` per broker call."""
    step = max(1, chunk_size)
    for start in range(0, len(out), step):
        b.broker.publish_many(out[start:start + step])
    return [AsyncResult(m.id, b) for m in out]


def open_store(params: BoostParams, default: str) -> Store:
    plugins = get_plugins()
    name = params.store or default
    if "://" in name:
        scheme = name.split("://", 1)[0]
        for reg in plugins.registry.items["store"].values():
            if scheme in reg.schemes:
                return reg.load()(name, params)  # type: ignore[no-any-return]
        raise ConfigError(f"no installed store handles URLs of scheme {scheme!r}")
    reg = plugins.get("store", name)
    cls = reg.load()
    url = params.store_url
    if url is None and name == default and params.broker_url:
        # the companion store shares the broker's URL only if it speaks that scheme (not sqlite + amqp://)
        if params.broker_url.split("://", 1)[0].lower() in reg.schemes:
            url = params.broker_url
    return cls(url, params)  # type: ignore[no-any-return]


@overload
def boost(queue: str, /, **params: Unpack[BoostKwargs]) -> BoostDecorator: ...


@overload
def boost(queue: str, /, **params: Any) -> BoostDecorator: ...


@overload
def boost(queue: BoostParams, /) -> BoostDecorator: ...


def boost(queue: str | BoostParams, /, **params: Any) -> BoostDecorator:
    """Turn a function into a task on ``queue``.

    ``params`` are the core settings (:class:`~boostkernel.params.BoostParams`) and the options of every
    installed control (``boostkernel plugins list`` shows them). Configuration errors (unknown parameter,
    wrong type, plugin not installed, a control the concurrency mode cannot support) are raised here, at
    decoration time, with the fix in the message.
    """
    if isinstance(queue, BoostParams):
        resolved = queue
    else:
        resolved = build_params(queue, params)

    def decorate(fn: Any) -> Any:
        raw = fn.__func__ if isinstance(fn, (staticmethod, classmethod)) else fn
        cls = AsyncBooster if inspect.iscoroutinefunction(raw) else Booster
        b: Booster[Any, Any] = cls(raw, resolved)
        if raw is not fn:  # @boost above @classmethod / @staticmethod
            b.method_kind = "class" if isinstance(fn, classmethod) else "static"
        return b

    return decorate
