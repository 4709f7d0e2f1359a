"""boostkernel: run any Python function as a distributed, controlled task.

    from boostkernel import boost

    @boost("add")
    def add(x: int, y: int) -> int:
        return x + y

    add.push(1, 2)      # publish
    add.consume()       # run it on workers
"""

from __future__ import annotations

from importlib import metadata

from .booster import Booster, boost
from .broker import Broker, BrokerCapabilities, DeadLetterRecord, Delivery, Outgoing
from .consumer import current_task
from .control import Control, TaskContext
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
from .params import BoostParams, TaskOptions
from .results import AsyncResult, await_all, wait_all
from .retrying import Backoff, backoff_delay
from .store import Store, StoreCapabilities
from .timeouts import call_with_timeout, raise_in_thread
from .worker import run_worker, wait_for_consumers

try:
    __version__ = metadata.version("boostkernel")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    # the user API
    "boost", "Booster", "BoostParams", "TaskOptions", "AsyncResult", "wait_all", "await_all", "current_task",
    "run_worker", "wait_for_consumers",
    # signals a task may raise
    "Retry", "Requeue", "DeadLetter", "Skip",
    # errors
    "BoostError", "ConfigError", "PluginNotInstalled", "PluginLoadError", "BrokerUnavailable",
    "MessageRejected", "MessageDecodeError", "ResultsNotEnabled", "ResultTimeout", "TaskFailed",
    "TaskTimeout", "TaskCancelled",
    # the plugin API
    "hookimpl", "Broker", "BrokerCapabilities", "Outgoing", "Delivery", "DeadLetterRecord",
    "Executor", "ExecutorCapabilities", "Store", "StoreCapabilities", "Control", "TaskContext",
    # helpers shared by plugins
    "Backoff", "backoff_delay", "GreenExecutor", "call_with_timeout", "raise_in_thread",
    "__version__",
]
