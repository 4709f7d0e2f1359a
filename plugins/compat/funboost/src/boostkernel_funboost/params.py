"""``BoosterParams`` (the reference system's 52 fields) and ``TaskOptions``, translated to boostkernel.

Every field is in :data:`FIELDS` with what happens to it: *mapped* to a ``@boost`` option, a broker
option or a booster behaviour; *ignored* with a logged note (logging cosmetics, values filled in
automatically); or *refused* when set, with a message naming what to use instead. A field left at its
default never logs anything.
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Callable
from typing import Any

from boostkernel import ConfigError
from boostkernel import TaskOptions as KernelTaskOptions

from . import config
from .enums import BrokerEnum, ConcurrentModeEnum, resolve_broker_kind, resolve_concurrent_mode

log = logging.getLogger("boostkernel.funboost")

_ADVANCED_RETRY_DEFAULT: dict[str, Any] = {"retry_mode": "sleep", "retry_base_interval": 1.0, "retry_multiplier": 2.0,
                           "retry_max_interval": 60.0, "retry_jitter": False}
_PERSIST_DEFAULT = {"is_save_status": False, "is_save_result": False, "expire_seconds": 7 * 24 * 3600}
_MANUAL_DEFAULT = {"is_manual_func_input_params": False, "must_arg_name_list": [], "optional_arg_name_list": []}

#: field -> (default, how it is handled: "map", "ignore", "auto" or "refuse: <what to use instead>")
FIELDS: dict[str, tuple[Any, str]] = {
    # identity / broker
    "queue_name": (None, "map"),
    "broker_kind": (BrokerEnum.SQLITE_QUEUE, "map"),
    "project_name": (None, "ignore"),
    "broker_exclusive_config": ({}, "map"),
    # concurrency
    "concurrent_mode": (ConcurrentModeEnum.THREADING, "map"),
    "concurrent_num": (50, "map"),
    "specify_concurrent_pool": (None, "refuse: each booster runs its own pool; size it with concurrent_num"),
    "specify_async_loop": (None, "refuse: concurrent_mode=ASYNC runs boostkernel's own event loop per consumer; "
                                 "create loop-bound clients inside the task (or once per loop)"),
    "is_auto_start_specify_async_loop_in_child_thread": (True, "ignore"),
    "schedule_tasks_on_main_thread": (False, "map"),
    # rate control
    "qps": (None, "map"),
    "is_using_distributed_frequency_control": (False, "map"),
    "is_send_consumer_heartbeat_to_redis": (False, "map"),
    # retries / DLQ
    "max_retry_times": (3, "map"),
    "is_using_advanced_retry": (False, "map"),
    "advanced_retry_config": (_ADVANCED_RETRY_DEFAULT, "map"),
    "is_push_to_dlx_queue_when_retry_max_times": (False, "map"),
    # timeouts / kill
    "function_timeout": (None, "map"),
    "is_support_remote_kill_task": (False, "map"),
    # filtering, expiry
    "do_task_filtering": (False, "map"),
    "task_filtering_expire_seconds": (0, "map"),
    "msg_expire_seconds": (None, "map"),
    # scheduling / start-up
    "delay_task_apscheduler_jobstores_kind": ("redis", "ignore"),
    "allow_run_time_cron": (None, "map"),
    "is_auto_start_consuming_message": (False, "map"),
    "booster_group": (None, "map"),
    # results / RPC
    "is_using_rpc_mode": (False, "map"),
    "rpc_result_expire_seconds": (1800, "map"),
    "rpc_timeout": (1800, "map"),
    # status persistence
    "function_result_status_persistance_conf": (_PERSIST_DEFAULT, "map"),
    "user_custom_record_process_info_func": (
        None, "refuse: write a small plugin implementing the task_finished hook (docs/hooks.md), or read "
              "results with is_using_rpc_mode=True"),
    # logging (cosmetic)
    "log_level": (10, "map"),
    "logger_prefix": ("", "ignore"),
    "create_logger_file": (True, "ignore"),
    "logger_name": ("", "ignore"),
    "log_filename": (None, "ignore"),
    "is_show_message_get_from_broker": (False, "ignore"),
    "is_print_detail_exception": (True, "ignore"),
    "publish_msg_log_use_full_msg": (False, "ignore"),
    # misc / extension
    "consuming_function_decorator": (None, "map"),
    "should_check_publish_func_params": (True, "map"),
    "manual_func_input_params": (
        _MANUAL_DEFAULT, "refuse: arguments are checked against the function's real signature; give the function "
                         "explicit parameters, or turn the check off with should_check_publish_func_params=False"),
    "consumer_override_cls": (None, "refuse: a consumer subclass has no place here; write a control plugin "
                                    "(docs/plugins.md, examples/third_party_control)"),
    "publisher_override_cls": (None, "refuse: a publisher subclass has no place here; write a control plugin "
                                     "with an on_publish step (docs/plugins.md)"),
    "consuming_function_kind": (None, "auto"),
    "user_options": ({}, "map"),
    "consuming_function": (None, "auto"),
    "consuming_function_raw": (None, "auto"),
    "consuming_function_name": ("", "auto"),
    "auto_generate_info": ({}, "auto"),
    "is_fake_booster": (False, "refuse: boosters are built from code here; import the module that defines the task"),
    "booster_registry_name": ("booster_registry_default", "ignore"),
}
#: Old misspelled names the reference system still accepts -> current name.
_RENAMED = {"is_send_consumer_hearbeat_to_redis": "is_send_consumer_heartbeat_to_redis",
            "consumin_function_decorator": "consuming_function_decorator",
            "msg_expire_senconds": "msg_expire_seconds", "threads_num": "concurrent_num",
            "specify_threadpool": "specify_concurrent_pool"}
#: Legacy fields the reference system drops silently; dropped here with a note.
_REMOVED = {"retry_interval", "is_do_not_run_by_specify_time_effect", "do_not_run_by_specify_time",
            "is_consuming_function_use_multi_params", "msg_schedule_time_intercal"}

_LOG_LEVELS = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}


class BoosterParams:
    """The reference system's booster settings. Use ``@boost(BoosterParams(...))`` or ``@BoosterParams(...)``.

    Subclass it to share defaults (``class MyParams(BoosterParams): broker_kind = BrokerEnum.REDIS``)."""

    # Only annotations (no values): the defaults live in FIELDS; a subclass overrides one by assigning it.
    queue_name: str
    broker_kind: str
    project_name: str | None
    broker_exclusive_config: dict[str, Any]
    concurrent_mode: str
    concurrent_num: int
    specify_concurrent_pool: Any
    specify_async_loop: Any
    is_auto_start_specify_async_loop_in_child_thread: bool
    schedule_tasks_on_main_thread: bool
    qps: float | None
    is_using_distributed_frequency_control: bool
    is_send_consumer_heartbeat_to_redis: bool
    max_retry_times: int
    is_using_advanced_retry: bool
    advanced_retry_config: dict[str, Any]
    is_push_to_dlx_queue_when_retry_max_times: bool
    function_timeout: float | None
    is_support_remote_kill_task: bool
    do_task_filtering: bool
    task_filtering_expire_seconds: float
    msg_expire_seconds: float | None
    delay_task_apscheduler_jobstores_kind: str
    allow_run_time_cron: str | None
    is_auto_start_consuming_message: bool
    booster_group: str | None
    is_using_rpc_mode: bool
    rpc_result_expire_seconds: float
    rpc_timeout: float
    function_result_status_persistance_conf: dict[str, Any]
    user_custom_record_process_info_func: Callable[..., Any] | None
    log_level: int | str
    logger_prefix: str
    create_logger_file: bool
    logger_name: str | None
    log_filename: str | None
    is_show_message_get_from_broker: bool
    is_print_detail_exception: bool
    publish_msg_log_use_full_msg: bool
    consuming_function_decorator: Callable[..., Any] | None
    should_check_publish_func_params: bool
    manual_func_input_params: dict[str, Any]
    consumer_override_cls: type | None
    publisher_override_cls: type | None
    consuming_function_kind: str | None
    user_options: dict[str, Any]
    consuming_function: Callable[..., Any] | None
    consuming_function_raw: Callable[..., Any] | None
    consuming_function_name: str
    auto_generate_info: dict[str, Any]
    is_fake_booster: bool
    booster_registry_name: str

    def __init__(self, **fields: Any) -> None:
        for old, new in _RENAMED.items():
            if old in fields:
                fields.setdefault(new, fields.pop(old))
        for name in _REMOVED & set(fields):
            log.warning("BoosterParams: %s was removed from the reference system and is ignored here too "
                        "(allow_run_time_cron replaces the do-not-run window)", name)
            fields.pop(name)
        unknown = set(fields) - set(FIELDS)
        if unknown:
            import difflib

            bad = sorted(unknown)[0]
            close = difflib.get_close_matches(bad, list(FIELDS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"BoosterParams got an unknown field {bad!r}{hint} "
                              "(docs/migration-funboost.md lists all 52)")
        if "queue_name" not in fields and not isinstance(getattr(type(self), "queue_name", None), str):
            raise ConfigError("BoosterParams needs queue_name=... (the queue this function consumes)")
        for name, (default, _) in FIELDS.items():
            value = fields.get(name, getattr(type(self), name, default))
            setattr(self, name, dict(value) if isinstance(value, dict) else value)

    def __call__(self, fn: Callable[..., Any]) -> Any:
        """``@BoosterParams(...)`` used directly as the decorator."""
        from .booster import boost

        return boost(self)(fn)

    def model_copy(self, *, update: dict[str, Any] | None = None) -> BoosterParams:
        return type(self)(**(self.as_dict() | (update or {})))

    copy = model_copy

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FIELDS}

    def get_str_dict(self) -> dict[str, Any]:
        return {k: (v if isinstance(v, (str, int, float, bool, type(None), dict, list)) else repr(v))
                for k, v in self.as_dict().items()}

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.as_dict().items() if v != FIELDS[k][0]}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"


def _is_default(name: str, value: Any) -> bool:
    default = FIELDS[name][0]
    if isinstance(default, dict) and isinstance(value, dict):
        return all(value.get(k, dv) == dv for k, dv in default.items()) and set(value) <= set(default)
    return bool(value == default)


def translate(p: BoosterParams) -> tuple[str, dict[str, Any]]:
    """``(queue, @boost keyword arguments)`` for ``p``; raises :class:`ConfigError` for a refused field."""
    queue = p.queue_name
    kw: dict[str, Any] = {}
    q = f"queue {queue!r}"
    for name, (_, how) in FIELDS.items():
        value = getattr(p, name)
        if how.startswith("refuse") and not _is_default(name, value):
            raise ConfigError(f"BoosterParams.{name} is not supported ({q}): {how.removeprefix('refuse: ')}")
        if how == "ignore" and not _is_default(name, value):
            log.info("%s: BoosterParams.%s=%r has no effect here (it shaped the reference system's logging or "
                     "bookkeeping)", q, name, value)

    # broker
    mapped = resolve_broker_kind(p.broker_kind)
    if mapped.note and p.broker_kind != BrokerEnum.SQLITE_QUEUE:
        log.debug("%s: broker_kind=%s -> broker=%r (%s)", q, p.broker_kind, mapped.broker, mapped.note)
    kw["broker"] = mapped.broker
    options = dict(mapped.options) | dict(p.broker_exclusive_config or {})
    if options:
        kw["broker_options"] = options
    url = config.broker_url_for(mapped.broker)
    if url:
        kw["broker_url"] = url
    if mapped.broker == "sqlite" and config.data_dir():
        kw["data_dir"] = config.data_dir()

    # concurrency
    kw["concurrency"] = resolve_concurrent_mode(p.concurrent_mode)
    num = p.concurrent_num
    if not isinstance(num, int) or isinstance(num, bool) or num < 1:
        raise ConfigError(f"concurrent_num={num!r} ({q}): must be an integer >= 1")
    kw["workers"] = 1 if kw["concurrency"] == "solo" else num

    # rate, retries, timeouts, filtering, expiry, window
    if p.qps:
        kw["qps"] = float(p.qps)
        if p.is_using_distributed_frequency_control:
            kw["qps_scope"] = "global"
    kw["max_retries"] = int(p.max_retry_times)
    if p.is_using_advanced_retry:
        cfg = _ADVANCED_RETRY_DEFAULT | dict(p.advanced_retry_config or {})
        kw["retry_backoff"] = float(cfg["retry_base_interval"])
        kw["retry_backoff_max"] = float(cfg["retry_max_interval"])
        kw["retry_jitter"] = bool(cfg["retry_jitter"])
        mode = cfg["retry_mode"]
        if mode not in ("sleep", "requeue"):
            raise ConfigError(f"advanced_retry_config retry_mode={mode!r} ({q}): use 'sleep' or 'requeue'")
        kw["retry_mode"] = "worker" if mode == "sleep" else "republish"
        if float(cfg["retry_multiplier"]) != 2.0:
            log.info("%s: retry_multiplier=%s: boostkernel's backoff doubles each time (multiplier 2)",
                     q, cfg["retry_multiplier"])
    if p.is_send_consumer_heartbeat_to_redis:  # the reference system's pause flag needs heartbeats on
        kw["pausable"] = True
    if p.function_timeout:
        kw["timeout"] = float(p.function_timeout)
    if p.is_support_remote_kill_task:
        kw["cancellable"] = True
    if p.do_task_filtering:
        kw["dedup"] = True
        if p.task_filtering_expire_seconds:
            kw["dedup_ttl"] = float(p.task_filtering_expire_seconds)
    if p.msg_expire_seconds:
        kw["expires"] = float(p.msg_expire_seconds)
    if p.allow_run_time_cron:
        kw["allowed_window"] = p.allow_run_time_cron
    if p.booster_group:
        kw["group"] = p.booster_group

    # results
    persist = _PERSIST_DEFAULT | dict(p.function_result_status_persistance_conf or {})
    if p.is_using_rpc_mode or persist["is_save_status"] or persist["is_save_result"]:
        kw["results"] = True
        kw["result_ttl"] = float(p.rpc_result_expire_seconds)
        if persist["is_save_status"] or persist["is_save_result"]:
            kw["result_ttl"] = max(kw["result_ttl"], float(persist["expire_seconds"]))
            log.info("%s: task status/results are kept in the broker's result store (result_ttl=%ss), not MongoDB",
                     q, kw["result_ttl"])
    if p.log_level == FIELDS["log_level"][0]:
        pass  # funboost's default (DEBUG) was for its own colourful console; keep boostkernel's INFO
    elif isinstance(p.log_level, int):
        kw["log_level"] = _LOG_LEVELS.get(p.log_level, "INFO")
    elif isinstance(p.log_level, str):
        kw["log_level"] = p.log_level.upper()
    if not p.should_check_publish_func_params:
        kw["validate_args"] = False
    return queue, kw


# --- per-message options --------------------------------------------------------------------------


class TaskOptions:
    """The reference system's per-message options (``publish(msg, task_options=TaskOptions(...))``)."""

    def __init__(self, task_id: str | None = None, function_timeout: float | None = None,
                 max_retry_times: int | None = None, is_print_detail_exception: bool | None = None,
                 msg_expire_seconds: float | None = None, is_using_rpc_mode: bool | None = None,
                 countdown: float | None = None, eta: _dt.datetime | str | None = None,
                 misfire_grace_time: float | None = None, user_extra_info: dict[str, Any] | None = None,
                 other_extra_params: dict[str, Any] | None = None, do_task_filtering: bool | None = None,
                 filter_str: str | None = None, **extra: Any) -> None:
        if "msg_expire_senconds" in extra:
            msg_expire_seconds = extra.pop("msg_expire_senconds")
        for ignored in ("publish_time", "publish_time_format", "can_not_json_serializable_keys", "otel_context"):
            extra.pop(ignored, None)
        if extra:
            raise ConfigError(f"TaskOptions got an unknown field {sorted(extra)[0]!r} "
                              "(docs/migration-funboost.md lists the per-message options)")
        if countdown is not None and eta is not None:
            raise ConfigError("TaskOptions: give countdown or eta, not both")
        self.task_id, self.function_timeout, self.max_retry_times = task_id, function_timeout, max_retry_times
        self.is_print_detail_exception, self.msg_expire_seconds = is_print_detail_exception, msg_expire_seconds
        self.is_using_rpc_mode, self.countdown, self.eta = is_using_rpc_mode, countdown, eta
        self.misfire_grace_time, self.user_extra_info = misfire_grace_time, user_extra_info
        self.other_extra_params, self.do_task_filtering, self.filter_str = other_extra_params, do_task_filtering, filter_str

    def to_kernel(self, booster_results: bool) -> KernelTaskOptions:
        """boostkernel's :class:`~boostkernel.TaskOptions` for these options."""
        if self.is_using_rpc_mode and not booster_results:
            raise ConfigError("TaskOptions(is_using_rpc_mode=True): results are kept per booster here; set "
                              "is_using_rpc_mode=True on the BoosterParams of this queue")
        eta: Any = self.eta
        if isinstance(eta, str):
            eta = _dt.datetime.strptime(eta, "%Y-%m-%d %H:%M:%S")
        if isinstance(eta, _dt.datetime) and eta.tzinfo is None:
            eta = eta.astimezone()  # a naive time is local time, as in the reference system
        extra = self.other_extra_params or {}
        priority = extra.get("priority", extra.get("priroty"))
        headers = dict(self.user_extra_info) if self.user_extra_info else None
        return KernelTaskOptions(
            task_id=self.task_id, countdown=self.countdown, eta=eta, expires=self.msg_expire_seconds,
            priority=priority, max_retries=self.max_retry_times, timeout=self.function_timeout,
            dedup_key=self.filter_str, headers=headers)


#: Older names of TaskOptions in the reference system's API.
PriorityConsumingControlConfig = TaskOptions
IndependenceFuctionConsumingControlConfig = TaskOptions


def task_options_from(value: Any, booster_results: bool) -> KernelTaskOptions | None:
    if value is None:
        return None
    if isinstance(value, KernelTaskOptions):
        return value
    if isinstance(value, dict):
        value = TaskOptions(**value)
    if not isinstance(value, TaskOptions):
        raise ConfigError(f"task_options={value!r}: give a TaskOptions (or a dict of its fields)")
    return value.to_kernel(booster_results)
