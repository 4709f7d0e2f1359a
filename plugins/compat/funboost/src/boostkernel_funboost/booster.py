"""``boost`` and the booster object with the reference system's method names, on a boostkernel Booster."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from boostkernel import ConfigError, DeadLetter, Requeue
from boostkernel import boost as kernel_boost

from .params import BoosterParams, task_options_from, translate
from .result import AsyncResult

log = logging.getLogger("boostkernel.funboost")


class ExceptionForRetry(Exception):  # noqa: N818 - the reference system's name
    """Raise it to retry the task (any exception does; kept for code that raises it explicitly)."""


class ExceptionForRequeue(Requeue):
    """Raise it to put the message back on the queue without counting an attempt."""

    def __init__(self, *args: Any) -> None:
        super().__init__(reason=" ".join(map(str, args)) or "requeue")


class ExceptionForPushToDlxqueue(DeadLetter):
    """Raise it to send the message to the dead-letter queue now."""

    def __init__(self, *args: Any) -> None:
        super().__init__(" ".join(map(str, args)) or "dead-lettered by the task")


class Booster:
    """A function decorated with the reference system's ``@boost``.

    Calling it runs the function locally; the methods publish and consume under the reference system's names.
    ``kernel`` is the boostkernel :class:`~boostkernel.Booster` behind it: every boostkernel method is
    reachable here too (``f.count()``, ``f.dead_letters()``, ``f.stop()`` …)."""

    def __init__(self, params: BoosterParams, fn: Callable[..., Any]) -> None:
        queue, kw = translate(params)
        run = params.consuming_function_decorator(fn) if params.consuming_function_decorator else fn
        self.boost_params = params
        self.queue_name = queue
        self.consuming_function = fn
        self.kernel: Any = kernel_boost(queue, **kw)(run)
        self.__wrapped__ = fn
        self.__name__ = getattr(fn, "__name__", queue)
        self.__doc__ = fn.__doc__
        params.consuming_function = params.consuming_function_raw = fn
        params.consuming_function_name = self.__name__
        _BOOSTERS[queue] = self
        if params.is_auto_start_consuming_message:
            self.consume()

    # --- calling and publishing -----------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.consuming_function(*args, **kwargs)

    def _wrap(self, r: Any) -> AsyncResult:
        return AsyncResult(r, timeout=float(self.boost_params.rpc_timeout))

    def push(self, *args: Any, **kwargs: Any) -> AsyncResult:
        """Publish a call with these arguments (like calling the function)."""
        return self._wrap(self.kernel.push(*args, **kwargs))

    delay = push

    def publish(self, msg: dict[str, Any] | str, task_id: str | None = None, task_options: Any = None,
                priority_control_config: Any = None, **legacy: Any) -> AsyncResult:
        """Publish the function's keyword arguments as a dict (or a JSON string) with per-message options:
        a ``TaskOptions`` of this package, a dict of its fields, or boostkernel's own ``TaskOptions``."""
        if isinstance(msg, str):
            msg = json.loads(msg)
        if not isinstance(msg, dict):
            raise ConfigError(f"publish(msg={msg!r}): give the function's keyword arguments as a dict")
        msg = dict(msg)
        extra = msg.pop("extra", None)  # a message from the reference system carries its own 'extra'
        opts_in = task_options or priority_control_config or legacy.pop("independence_control_config", None)
        if legacy:
            raise ConfigError(f"publish() got an unexpected argument {sorted(legacy)[0]!r}")
        if opts_in is None and isinstance(extra, dict):
            from .params import TaskOptions

            known = {"task_id", "countdown", "eta", "msg_expire_seconds", "max_retry_times", "function_timeout",
                     "other_extra_params", "filter_str"}
            opts_in = TaskOptions(**{k: v for k, v in extra.items() if k in known})
        opts = task_options_from(opts_in, bool(self.kernel.params.results))
        if task_id:
            from boostkernel import TaskOptions as KernelTaskOptions

            opts = opts or KernelTaskOptions()
            opts.task_id = task_id
        return self._wrap(self.kernel.publish(msg, opts))

    pub = publish
    apply_async = publish

    async def aio_push(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self._wrap(await self.kernel.aio_push(*args, **kwargs))

    async def aio_publish(self, msg: dict[str, Any] | str, task_id: str | None = None,
                          task_options: Any = None) -> AsyncResult:
        import asyncio

        return await asyncio.to_thread(self.publish, msg, task_id, task_options)

    def multi_process_pub_params_list(self, params_list: list[dict[str, Any]], process_num: int = 16) -> None:
        """Publish many kwargs dicts (batched by the broker; ``process_num`` is not needed for speed here)."""
        self.kernel.push_many(params_list)

    # --- consuming --------------------------------------------------------------------------------
    def consume(self) -> Booster:
        """Start consuming in background threads; return at once (``schedule_tasks_on_main_thread`` blocks).

        As in the reference system, the process keeps consuming after the script's main thread ends, until
        Ctrl-C or SIGTERM (then running tasks finish and prefetched messages go back to the queue)."""
        self.kernel.consume()
        _keep_consuming_after_main()
        if self.boost_params.schedule_tasks_on_main_thread:
            self.kernel.wait()
        return self

    start = consume
    start_consuming_message = consume

    def multi_process_consume(self, process_num: int = 1) -> Booster:
        """Consume in ``process_num`` child processes, each with this booster's concurrency."""
        self.kernel.multi_process_consume(process_num)
        _keep_consuming_after_main()
        return self

    multi_process_start = multi_process_consume
    mp_consume = multi_process_consume

    def wait_for_possible_has_finish_all_tasks(self, minutes: float = 3) -> None:
        """Block until the queue has stayed empty for ``minutes`` minutes."""
        empty_since: float | None = None
        while True:
            if self.kernel.count() == 0:
                empty_since = empty_since or time.monotonic()
                if time.monotonic() - empty_since >= minutes * 60:
                    return
            else:
                empty_since = None
            time.sleep(min(1.0, minutes * 60 / 10 or 0.05))

    # --- queue management -------------------------------------------------------------------------
    def clear(self) -> int:
        """Delete every waiting message; return how many."""
        return int(self.kernel.purge())

    clear_queue = clear

    def get_message_count(self) -> int:
        return int(self.kernel.count())

    def pause(self) -> None:
        """Pause consuming on every worker of this queue (needs ``boostkernel[pause]``)."""
        self.kernel.pause()

    pause_consume = pause

    def continue_consume(self) -> None:
        self.kernel.resume()

    def clear_filter_tasks(self) -> None:
        raise ConfigError("clear_filter_tasks(): dedup records expire by themselves here (dedup_ttl = "
                          "task_filtering_expire_seconds); publish with TaskOptions(filter_str=...) to use a new key")

    def fabric_deploy(self, *args: Any, **kwargs: Any) -> None:
        raise ConfigError("fabric_deploy() is not provided: deploy the code with your usual tool and run "
                          "`boostkernel worker yourmodule` (or f.multi_process_consume(n)) on each machine")

    @property
    def publisher_of_same_queue(self) -> Booster:
        """The older API's publisher object: the booster itself publishes."""
        return self

    publisher = publisher_of_same_queue
    consumer = publisher_of_same_queue

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.kernel, name)

    def __repr__(self) -> str:
        return f"<funboost-compatible Booster {self.__name__} queue={self.queue_name!r} on {self.kernel!r}>"


_BOOSTERS: dict[str, Booster] = {}
_keep_hook_installed = False


def _wait_at_main_exit() -> None:
    import os

    from boostkernel import wait_for_consumers

    if os.environ.get("BOOSTKERNEL_FUNBOOST_EXIT_WITH_MAIN"):
        return
    log.info("main thread finished: still consuming, as the reference system does (Ctrl-C or SIGTERM stops)")
    wait_for_consumers()


def _keep_consuming_after_main() -> None:
    """The reference system's consumers run in non-daemon threads, so a script that calls ``consume()`` never
    ends by itself; boostkernel stops consumers when the main thread ends. Registered after boostkernel's own
    end-of-main hook, this one runs first (they run in reverse order) and waits until the consumers are
    stopped by a signal; set ``BOOSTKERNEL_FUNBOOST_EXIT_WITH_MAIN=1`` for boostkernel's behaviour."""
    global _keep_hook_installed
    if _keep_hook_installed:
        return
    import threading

    register = getattr(threading, "_register_atexit", None)
    if register is None:  # pragma: no cover - every supported CPython has it
        return
    try:
        register(_wait_at_main_exit)
    except RuntimeError:  # already shutting down
        return
    _keep_hook_installed = True


def boost(queue_name: str | BoosterParams, **fields: Any) -> Callable[[Callable[..., Any]], Booster]:
    """``@boost(BoosterParams(queue_name=..., ...))`` or ``@boost("queue", qps=..., ...)``."""
    if isinstance(queue_name, BoosterParams):
        if fields:
            queue_name = queue_name.model_copy(update=fields)
        params = queue_name
    elif isinstance(queue_name, str):
        params = BoosterParams(queue_name=queue_name, **fields)
    else:
        raise ConfigError(f"boost({queue_name!r}): give a BoosterParams(...) or a queue name")

    def decorate(fn: Callable[..., Any]) -> Booster:
        return Booster(params, fn)

    return decorate


class BoostersManager:
    """The registry of boosters defined in this process, under the reference system's method names."""

    @staticmethod
    def get_booster(queue_name: str) -> Booster:
        try:
            return _BOOSTERS[queue_name]
        except KeyError:
            raise ConfigError(f"no booster for queue {queue_name!r} in this process; import the module that "
                              "defines it first") from None

    get_or_create_booster_by_queue_name = get_booster

    @staticmethod
    def get_all_queues() -> list[str]:
        return list(_BOOSTERS)

    @staticmethod
    def show_all_boosters() -> None:
        for q, b in _BOOSTERS.items():
            print(f"{q}: {b.boost_params!r}")

    show_all_consumer_info = show_all_boosters

    @classmethod
    def push(cls, queue_name: str, *args: Any, **kwargs: Any) -> AsyncResult:
        return cls.get_booster(queue_name).push(*args, **kwargs)

    @classmethod
    def publish(cls, queue_name: str, msg: dict[str, Any] | str, task_id: str | None = None,
                task_options: Any = None) -> AsyncResult:
        return cls.get_booster(queue_name).publish(msg, task_id, task_options)

    @classmethod
    def consume_queues(cls, *queue_names: str) -> None:
        for q in queue_names:
            cls.get_booster(q).consume()

    consume = consume_queues

    @classmethod
    def consume_all_queues(cls) -> None:
        cls.consume_queues(*_BOOSTERS)

    consume_all = consume_all_queues

    @classmethod
    def multi_process_consume_queues(cls, **queue_process_num: int) -> None:
        for q, n in queue_process_num.items():
            cls.get_booster(q).multi_process_consume(n)

    @classmethod
    def multi_process_consume_all_queues(cls, process_num: int = 1) -> None:
        for b in _BOOSTERS.values():
            b.multi_process_consume(process_num)

    @classmethod
    def consume_group(cls, booster_group: str) -> None:
        for b in _BOOSTERS.values():
            if b.boost_params.booster_group == booster_group:
                b.consume()


ConsumersManager = BoostersManager


def ctrl_c_recv() -> None:
    """Block the main thread until every consumer stops (Ctrl-C or SIGTERM stop them gracefully)."""
    from boostkernel import wait_for_consumers

    wait_for_consumers()
