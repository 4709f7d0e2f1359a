"""boostkernel: run any Python function as a distributed, controlled task.

    from boostkernel import boost

    @boost("add")
    def add(x: int, y: int) -> int:
        return x + y

    add.push(1, 2)      # publish
    add.consume()       # run it on workers

``import boostkernel`` is cheap: each name below is imported from its module on first use.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # not ``from typing import``: importing typing would cost more than this whole module
if TYPE_CHECKING:
    from typing import Any

    from .booster import Booster, boost
    from .broker import Broker, BrokerCapabilities, DeadLetterRecord, Delivery, Outgoing
    from .context import Outcome, TaskContext, current_task, worker_id
    from .control import Control
    from .errors import (
        BoostError,
        BrokerUnavailable,
        ConfigError,
        DeadLetter,
        MessageDecodeError,
        MessageRejected,
        PluginLoadError,
        PluginNotInstalled,
        Requeue,
        ResultsNotEnabled,
        ResultTimeout,
        Retry,
        Skip,
        TaskCancelled,
        TaskFailed,
        TaskTimeout,
    )
    from .executor import Executor, ExecutorCapabilities
    from .green import GreenExecutor
    from .hookspecs import hookimpl
    from .loading import boosters_of
    from .options import option
    from .params import BoostParams, TaskOptions
    from .plugins import Registry
    from .registry import get_booster
    from .results import AsyncResult, await_all, wait_all
    from .retrying import Backoff, backoff_delay
    from .signals import wait_for_consumers
    from .store import Store, StoreCapabilities
    from .timeouts import call_with_timeout, raise_in_thread
    from .worker import Worker, run_worker

_LAZY: dict[str, str] = {
    "boost": "booster", "Booster": "booster",
    "BoostParams": "params", "TaskOptions": "params",
    "AsyncResult": "results", "wait_all": "results", "await_all": "results",
    "current_task": "context", "TaskContext": "context", "Outcome": "context", "worker_id": "context",
    "run_worker": "worker", "Worker": "worker", "wait_for_consumers": "signals",
    "boosters_of": "loading", "get_booster": "registry",
    "hookimpl": "hookspecs", "Registry": "plugins", "option": "options",
    "Broker": "broker", "BrokerCapabilities": "broker", "Outgoing": "broker", "Delivery": "broker",
    "DeadLetterRecord": "broker",
    "Executor": "executor", "ExecutorCapabilities": "executor",
    "Store": "store", "StoreCapabilities": "store", "Control": "control",
    "Backoff": "retrying", "backoff_delay": "retrying", "GreenExecutor": "green",
    "call_with_timeout": "timeouts", "raise_in_thread": "timeouts",
    **{name: "errors" for name in (
        "Retry", "Requeue", "DeadLetter", "Skip", "BoostError", "ConfigError", "PluginNotInstalled",
        "PluginLoadError", "BrokerUnavailable", "MessageRejected", "MessageDecodeError", "ResultsNotEnabled",
        "ResultTimeout", "TaskFailed", "TaskTimeout", "TaskCancelled")},
}

__all__ = [
    # the user API
    "boost", "Booster", "BoostParams", "TaskOptions", "AsyncResult", "wait_all", "await_all", "current_task",
    "run_worker", "wait_for_consumers", "get_booster", "boosters_of", "Outcome",
    # signals a task may raise
    "Retry", "Requeue", "DeadLetter", "Skip",
    # errors
    "BoostError", "ConfigError", "PluginNotInstalled", "PluginLoadError", "BrokerUnavailable",
    "MessageRejected", "MessageDecodeError", "ResultsNotEnabled", "ResultTimeout", "TaskFailed",
    "TaskTimeout", "TaskCancelled",
    # the plugin API
    "hookimpl", "Registry", "option", "Broker", "BrokerCapabilities", "Outgoing", "Delivery", "DeadLetterRecord",
    "Executor", "ExecutorCapabilities", "Store", "StoreCapabilities", "Control", "TaskContext", "Worker",
    "worker_id",
    # helpers shared by plugins
    "Backoff", "backoff_delay", "GreenExecutor", "call_with_timeout", "raise_in_thread",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value
        return value
    if name == "__version__":
        from importlib import metadata

        try:
            version = metadata.version("boostkernel")
        except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
            version = "0.0.0"
        globals()["__version__"] = version
        return version
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
