"""funboost-compatible API on boostkernel: change ``from funboost import ...`` to
``from boostkernel_funboost import ...`` and keep the rest of the code.

See docs/migration-funboost.md for what every BoosterParams field, BrokerEnum member and booster method
becomes. The reference system itself is neither imported nor needed.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .booster import (
        Booster,
        BoostersManager,
        ConsumersManager,
        ExceptionForPushToDlxqueue,
        ExceptionForRequeue,
        ExceptionForRetry,
        boost,
        ctrl_c_recv,
    )
    from .config import patch_frame_config
    from .enums import BrokerEnum, ConcurrentModeEnum
    from .legacy import get_consumer
    from .params import (
        BoosterParams,
        IndependenceFuctionConsumingControlConfig,
        PriorityConsumingControlConfig,
        TaskOptions,
    )
    from .result import AsyncResult, HasNotAsyncResult

#: Each public name and its module, imported on first use: the plugin's entry point (``.plugin``) imports this
#: package, and ``boostkernel worker`` / ``plugins list`` must not pay for the whole compatibility layer.
_LAZY = {
    **dict.fromkeys(["Booster", "BoostersManager", "ConsumersManager", "ExceptionForPushToDlxqueue",
                     "ExceptionForRequeue", "ExceptionForRetry", "boost", "ctrl_c_recv"], "booster"),
    "patch_frame_config": "config", "BrokerEnum": "enums", "ConcurrentModeEnum": "enums", "get_consumer": "legacy",
    **dict.fromkeys(["BoosterParams", "IndependenceFuctionConsumingControlConfig", "PriorityConsumingControlConfig",
                     "TaskOptions"], "params"),
    "AsyncResult": "result", "HasNotAsyncResult": "result",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def _current_task() -> object:
    from boostkernel import current_task

    return current_task()


class _FunboostCurrentTask:
    """``fct``: the task being run (``fct.task_id``, ``fct.function_params``, ``fct.full_msg``)."""

    @property
    def task_id(self) -> str | None:
        ctx = _current_task()
        return getattr(ctx, "task_id", None)

    @property
    def function_params(self) -> dict[str, object] | None:
        ctx = _current_task()
        env = getattr(ctx, "envelope", None)
        return dict(env.kwargs) if env is not None else None

    @property
    def full_msg(self) -> dict[str, object] | None:
        ctx = _current_task()
        env = getattr(ctx, "envelope", None)
        if env is None:
            return None
        return {**env.kwargs, "extra": {"task_id": env.id, "publish_time": env.published_at}}


fct = funboost_current_task = _FunboostCurrentTask()

__all__ = [
    "AsyncResult", "Booster", "BoosterParams", "BoostersManager", "BrokerEnum", "ConcurrentModeEnum",
    "ConsumersManager", "ExceptionForPushToDlxqueue", "ExceptionForRequeue", "ExceptionForRetry",
    "HasNotAsyncResult", "IndependenceFuctionConsumingControlConfig", "PriorityConsumingControlConfig",
    "TaskOptions", "boost", "ctrl_c_recv", "fct", "funboost_current_task", "get_consumer", "patch_frame_config",
]
