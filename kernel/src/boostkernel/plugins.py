"""Plugin discovery, the registries of brokers/executors/controls/stores, and each plugin's status.

Discovery order (documented in docs/plugins.md):

1. ``BOOSTKERNEL_DISABLED_PLUGINS=a,b`` - entry points with these names are *blocked* (listed, not loaded).
2. Entry points of group ``boostkernel`` are loaded, each inside its own ``try``: a plugin that fails to
   import or register is recorded as *failed* with its error and the others keep working.
   ``BOOSTKERNEL_PLUGINS=a,b`` loads only these (an allow-list; empty means none);
   ``BOOSTKERNEL_DISABLE_PLUGIN_AUTOLOAD=1`` loads no entry point at all.
3. Plugins registered in code with :func:`register_plugin` (tests, applications).

``BOOSTKERNEL_TRACE_PLUGINS=1`` logs every hook call.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import traceback
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import pluggy

from . import hookspecs
from .errors import ConfigError, PluginLoadError, PluginNotInstalled
from .params import BoostParams

if TYPE_CHECKING:
    from .options import OptionInfo

log = logging.getLogger("boostkernel.plugins")
KINDS = ("broker", "executor", "control", "store", "command", "method")


@dataclass
class Registration:
    kind: str
    name: str
    factory: str
    """``"module:Class"``, imported on first use."""
    plugin: str
    summary: str = ""
    schemes: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    """Controls: the names that switch it on (its options' names, or core ``BoostParams`` fields)."""
    order: int = 500
    options: type | None = None
    """Controls: the options dataclass (see :mod:`boostkernel.options`)."""
    _loaded: Any = None

    def load(self) -> Any:
        """Import and return the class (cached)."""
        if self._loaded is None:
            module, _, attr = self.factory.partition(":")
            try:
                obj: Any = importlib.import_module(module)
                for part in attr.split("."):
                    obj = getattr(obj, part)
            except ImportError as exc:
                from ._catalog import EXTRAS

                fix = (f'pip install "boostkernel[{self.plugin}]"' if self.plugin in EXTRAS
                       else f"reinstall the distribution of plugin {self.plugin!r} with its dependencies")
                raise PluginLoadError(
                    f"{self.kind} {self.name!r} (plugin {self.plugin!r}) cannot be imported: {exc}. "
                    f"Install its dependencies: {fix}"
                ) from exc
            self._loaded = obj
        return self._loaded


@dataclass
class PluginStatus:
    name: str
    distribution: str | None
    version: str | None
    source: str
    """``entrypoint`` or ``local``."""
    status: str = "loaded"
    """``loaded``, ``failed`` or ``blocked``."""
    error: str | None = None
    entry_point: str | None = None
    provides: dict[str, list[str]] = field(default_factory=dict)
    requires: list[str] | None = None
    """The distribution's requirements (``None`` when unknown, e.g. a plugin registered in code)."""

    @property
    def light(self) -> bool:
        """True if the distribution needs nothing but boostkernel and the kernel's own dependencies: loading
        its classes imports no client library (``plugins list`` shows their capabilities)."""
        if self.requires is None:
            return self.source == "local"
        allowed = _kernel_requirements()
        return all(name.startswith("boostkernel") or name in allowed
                   for name in (_requirement_name(r) for r in self.requires if "extra ==" not in r))

    @property
    def kinds(self) -> list[str]:
        return [k for k in KINDS if self.provides.get(k)]


def _requirement_name(req: str) -> str:
    name = req.split(";")[0].strip().split("[")[0]
    for sep in "<>=!~ (":
        name = name.split(sep)[0]
    return name.lower().replace("_", "-")


_kernel_reqs: set[str] | None = None


def _kernel_requirements() -> set[str]:
    """Names of the kernel's own dependencies (already imported, so not client libraries)."""
    global _kernel_reqs
    if _kernel_reqs is None:
        from importlib import metadata

        try:
            reqs = metadata.distribution("boostkernel").requires or []
        except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
            reqs = []
        _kernel_reqs = {_requirement_name(r) for r in reqs if "extra ==" not in r}
    return _kernel_reqs


class Registry:
    """Filled by the ``register_*`` hooks. One per :class:`Plugins`."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Registration]] = {k: {} for k in KINDS}
        self.current_plugin = "?"

    def _add(self, reg: Registration) -> None:
        existing = self.items[reg.kind].get(reg.name)
        if existing is not None and existing.plugin != reg.plugin:
            raise PluginLoadError(
                f"{reg.kind} name {reg.name!r} is registered by both {existing.plugin!r} and {reg.plugin!r}"
            )
        self.items[reg.kind][reg.name] = reg

    def add_broker(self, name: str, factory: str, *, summary: str = "", schemes: tuple[str, ...] = ()) -> None:
        self._add(Registration("broker", name, factory, self.current_plugin, summary, schemes=tuple(schemes)))

    def add_executor(self, name: str, factory: str, *, summary: str = "") -> None:
        self._add(Registration("executor", name, factory, self.current_plugin, summary))

    def add_control(self, name: str, factory: str, *, options: type | None = None, params: tuple[str, ...] = (),
                    order: int = 500, summary: str = "") -> None:
        """Register a control: ``options`` is its options dataclass (each field a ``@boost`` parameter);
        ``params`` names core ``BoostParams`` fields that also switch it on (``results``). ``order``: lower
        runs first and wraps outermost (documented orders in docs/plugins.md)."""
        from .options import describe

        names = tuple(params)
        if options is not None:
            infos = describe(options, name)
            names += tuple(i.name for i in infos if i.switch)
            core = set(_core_fields())
            for info in infos:
                if info.name in core:
                    raise PluginLoadError(f"control {name!r}: option {info.name!r} is a core BoostParams field")
                for other in self.items["control"].values():
                    if other.options is not None and other.plugin != self.current_plugin and any(
                            i.name == info.name for i in describe(other.options, other.name)):
                        raise PluginLoadError(f"control {name!r}: option {info.name!r} is already declared by "
                                              f"control {other.name!r} (plugin {other.plugin!r})")
        self._add(Registration("control", name, factory, self.current_plugin, summary, params=names,
                               order=order, options=options))

    def add_booster_method(self, name: str, factory: str, *, summary: str = "") -> None:
        """Add a method to every booster: ``booster.NAME(*args)`` calls ``factory(booster, *args)``.

        ``factory`` is ``"module:function"``, imported on first call (e.g. ``pause``, ``revoke``, ``schedule``).
        """
        self._add(Registration("method", name, factory, self.current_plugin, summary))

    def add_store(self, name: str, factory: str, *, summary: str = "", schemes: tuple[str, ...] = ()) -> None:
        self._add(Registration("store", name, factory, self.current_plugin, summary, schemes=tuple(schemes)))

    def add_command(self, name: str, summary: str = "", factory: str = "") -> None:
        """Declare a CLI subcommand; ``factory`` names the ``"module:command"`` object (a ``click.Command``),
        which the ``boostkernel`` command adds under ``name`` (a plugin adds commands declared without one,
        or several at once, in its ``register_commands``)."""
        self._add(Registration("command", name, factory, self.current_plugin, summary))


def _core_fields() -> list[str]:
    return [f.name for f in fields(BoostParams)]


_REGISTER_HOOKS = ("register_brokers", "register_concurrency", "register_controls", "register_stores")


class Plugins:
    """The loaded plugins: a pluggy manager plus the registry and statuses."""

    def __init__(self, autoload: bool = True) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.statuses: dict[str, PluginStatus] = {}
        if os.environ.get("BOOSTKERNEL_TRACE_PLUGINS"):
            self.pm.trace.root.setwriter(lambda s: log.info("%s", s.rstrip()))
            self.pm.enable_tracing()
        if autoload:
            self._load_entry_points()

    # --- loading ------------------------------------------------------------------------------
    def _load_entry_points(self) -> None:
        blocked = {n.strip() for n in os.environ.get("BOOSTKERNEL_DISABLED_PLUGINS", "").split(",") if n.strip()}
        allow_raw = os.environ.get("BOOSTKERNEL_PLUGINS")
        allow = None if allow_raw is None else {n.strip() for n in allow_raw.split(",") if n.strip()}
        if os.environ.get("BOOSTKERNEL_DISABLE_PLUGIN_AUTOLOAD") in ("1", "true", "yes"):
            return
        from importlib import metadata

        for ep in metadata.entry_points(group=hookspecs.PROJECT):
            dist = getattr(ep, "dist", None)
            st = PluginStatus(ep.name, dist.name if dist else None, dist.version if dist else None,
                              "entrypoint", entry_point=ep.value, requires=list(dist.requires or []) if dist else None)
            if ep.name in self.statuses:
                st.status, st.error = "failed", f"duplicate plugin name {ep.name!r} (also from " \
                    f"{self.statuses[ep.name].distribution})"
                self.statuses[f"{ep.name}#dup"] = st
                continue
            self.statuses[ep.name] = st
            if ep.name in blocked or (allow is not None and ep.name not in allow):
                st.status = "blocked"
                continue
            try:
                module = ep.load()
                self.pm.register(module, name=ep.name)
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the others
                st.status, st.error = "failed", f"{type(exc).__name__}: {exc}"
                log.warning("plugin %r failed to load: %s", ep.name, st.error)
                continue
            self._run_register_hooks(ep.name)

    def register_plugin(self, module: Any, name: str) -> None:
        """Register a plugin object in code (tests, applications, out-of-tree examples)."""
        self.statuses[name] = PluginStatus(name, None, None, "local")
        self.pm.register(module, name=name)
        self._run_register_hooks(name)

    def unregister_plugin(self, name: str) -> None:
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        for kind in KINDS:
            for key in [k for k, r in self.registry.items[kind].items() if r.plugin == name]:
                del self.registry.items[kind][key]
        self.statuses.pop(name, None)

    def _run_register_hooks(self, name: str) -> None:
        """Call this plugin's register hooks alone, so its failure is recorded against it only."""
        st = self.statuses[name]
        plugin = self.pm.get_plugin(name)
        self.registry.current_plugin = name
        try:
            for hook_name in _REGISTER_HOOKS:
                for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                    if impl.plugin is plugin:
                        impl.function(registry=self.registry)
        except Exception as exc:  # noqa: BLE001 - recorded as the plugin's status
            st.status, st.error = "failed", f"{type(exc).__name__}: {exc}"
            log.warning("plugin %r failed to register: %s\n%s", name, st.error, traceback.format_exc())
            for kind in KINDS:  # drop whatever it half-registered
                for key in [k for k, r in self.registry.items[kind].items() if r.plugin == name]:
                    del self.registry.items[kind][key]
        finally:
            self.registry.current_plugin = "?"
        for kind in KINDS:
            names = [r.name for r in self.registry.items[kind].values() if r.plugin == name]
            if names:
                st.provides[kind] = names

    # --- lookups ------------------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        return sorted(self.registry.items[kind])

    def get(self, kind: str, name: str) -> Registration:
        reg = self.registry.items[kind].get(name)
        if reg is None:
            failed = self.statuses.get(name)
            if failed is not None and failed.status == "failed":
                raise PluginLoadError(f"{kind} plugin {name!r} is installed but failed to load: {failed.error}")
            if failed is not None and failed.status == "blocked":
                raise ConfigError(f"{kind} plugin {name!r} is blocked by BOOSTKERNEL_DISABLED_PLUGINS/PLUGINS")
            raise PluginNotInstalled(kind, name, self.names(kind))
        return reg

    def resolve_broker_name(self, broker: str) -> str:
        """``broker`` is a plugin name or a URL; return the plugin name."""
        if "://" not in broker:
            return broker
        scheme = broker.split("://", 1)[0].lower()
        for reg in self.registry.items["broker"].values():
            if scheme in reg.schemes:
                return reg.name
        answer = self.pm.hook.resolve_broker(url=broker)
        if answer:
            return str(answer)
        raise PluginNotInstalled("broker", scheme, self.names("broker"), hint=_scheme_hint(
            scheme, [s for r in self.registry.items["broker"].values() for s in r.schemes]))

    def control_options(self) -> dict[str, OptionInfo]:
        """Every option of every installed control, by option name."""
        from .options import describe

        out: dict[str, OptionInfo] = {}
        for reg in self.registry.items["control"].values():
            if reg.options is not None:
                for info in describe(reg.options, reg.name):
                    out[info.name] = info
        return out

    def option_owner(self, name: str) -> str | None:
        """The installed control declaring option ``name``."""
        info = self.control_options().get(name)
        return info.control if info is not None else None

    def booster_method(self, name: str) -> Any:
        """The function registered with ``add_booster_method(name, ...)`` or ``None``."""
        reg = self.registry.items["method"].get(name)
        return reg.load() if reg is not None else None

    def controls_for(self, params_set: set[str]) -> list[Registration]:
        """Control registrations switched on by any of ``params_set``, in their documented order."""
        active = [r for r in self.registry.items["control"].values() if set(r.params) & params_set]
        return sorted(active, key=lambda r: (r.order, r.name))


def _scheme_hint(scheme: str, installed: list[str]) -> str:
    """No installed broker handles ``scheme://``: the extra that does, or the closest scheme."""
    import difflib

    from ._catalog import SCHEMES

    msg = f"No installed broker handles URLs of scheme {scheme!r}."
    if scheme in SCHEMES:
        return f'{msg} Install it with: pip install "boostkernel[{SCHEMES[scheme]}]"'
    close = difflib.get_close_matches(scheme, sorted(set(installed) | set(SCHEMES)), n=1, cutoff=0.6)
    return f"{msg} Did you mean {close[0]}://?" if close else msg


_plugins: Plugins | None = None
_lock = threading.Lock()


def get_plugins() -> Plugins:
    """The process-wide :class:`Plugins`, loaded on first use."""
    global _plugins
    if _plugins is None:
        with _lock:
            if _plugins is None:
                _plugins = Plugins()
    return _plugins


def reset_plugins(plugins: Plugins | None = None) -> None:
    """Replace the process-wide plugins (tests)."""
    global _plugins
    _plugins = plugins


def register_plugin(module: Any, name: str) -> None:
    get_plugins().register_plugin(module, name)
