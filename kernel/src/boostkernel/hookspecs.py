"""The whole plugin contract of boostkernel, in one file.

A plugin is a module (named by an entry point in group ``boostkernel``) with functions decorated by
``boostkernel.hookimpl``. Hooks are called to **wire** things up at start-up, never per message:

* ``register_*`` hooks receive a :class:`~boostkernel.plugins.Registry` and add *lazy* factories
  (``"module:Class"`` strings), so listing plugins imports none of their client libraries.
* ``resolve_broker`` maps a URL to a broker name (first answer wins).
* ``register_commands`` adds subcommands to the ``boostkernel`` CLI.
* ``worker_started`` / ``worker_stopping`` observe worker lifecycle (metrics, dashboards).

Minimal plugin::

    from boostkernel import hookimpl

    @hookimpl
    def register_brokers(registry):
        registry.add_broker("mybroker", "my_plugin.broker:MyBroker", summary="What it is")

and in its pyproject.toml::

    [project.entry-points.boostkernel]
    mybroker = "my_plugin.plugin"
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .plugins import Registry

PROJECT = "boostkernel"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_brokers(registry: Registry) -> None:
    """Register broker classes with ``registry.add_broker(name, "module:Class", summary=..., schemes=...)``.

    :param registry: the kernel's registry. ``schemes`` lists URL schemes (``"redis"``, ``"rediss"``)
        that select this broker when a booster passes a URL as ``broker``.
    """


@hookspec
def register_concurrency(registry: Registry) -> None:
    """Register executors with ``registry.add_executor(name, "module:Class", summary=...)``."""


@hookspec
def register_controls(registry: Registry) -> None:
    """Register controls with ``registry.add_control(name, "module:Class", options=MyOptions, order=...)``.

    ``options`` is the control's options dataclass (:mod:`boostkernel.options`): its fields become ``@boost``
    parameters, and the control's module is imported only when a booster sets one of them.
    ``registry.add_booster_method(name, "module:function")`` adds a method to every booster.
    """


@hookspec
def register_stores(registry: Registry) -> None:
    """Register result/coordination stores with ``registry.add_store(name, "module:Class", summary=...)``."""


@hookspec
def register_commands(cli: Any) -> None:
    """Add subcommands to the ``boostkernel`` command (a ``click.Group``)."""


@hookspec(firstresult=True)
def resolve_broker(url: str) -> str | None:
    """Return the broker name for ``url`` if this plugin handles it, else ``None``. First answer wins.

    Schemes declared with ``add_broker(..., schemes=...)`` are resolved before this hook is asked.
    """


@hookspec
def worker_started(worker: Any) -> None:
    """A worker process started consuming: ``worker`` is a :class:`boostkernel.Worker` (``pid``,
    ``boosters``, ``queues``, ``processes``)."""


@hookspec
def worker_stopping(worker: Any) -> None:
    """A worker process begins its graceful shutdown (the same :class:`boostkernel.Worker`), once."""
