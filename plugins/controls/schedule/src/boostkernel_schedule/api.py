"""Schedules: definitions saved as JSON in the booster's store, fired by APScheduler triggers, each tick once.

Storage (``booster.store``: SQLite on one host, Redis across machines):

* ``schedule:<queue>`` - a JSON object ``{id: definition}``. A definition is plain data: the trigger
  (``{"cron": "..."}``, ``{"interval": s, "start": unix}`` or ``{"at": unix}``), its IANA timezone, the
  call's ``args``/``kwargs`` and message options. Nothing is pickled (APScheduler's own persistent job
  stores pickle jobs; we keep APScheduler's jobs in memory and rebuild them from these definitions).
* ``schedule-tick:<queue>:<id>:<tick>`` - the claim of one tick, set with ``only_if_absent``. Every
  scheduler process computes the same ticks (the interval's start is fixed when the schedule is added),
  and only the one whose claim succeeds publishes, so a tick fires once however many schedulers run.
  The message's task id is derived from (queue, id, tick), so even a duplicate would carry the same id.

Delivery of a tick is at-most-once in one narrow case: a scheduler that dies between claiming a tick and
publishing it (a few milliseconds) loses that tick. Ticks missed while no scheduler runs are not
replayed, except the latest one if it is within ``misfire_grace_time`` (default 60 s).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from boostkernel.errors import ConfigError
from boostkernel.logs import queue_logger
from boostkernel.params import TaskOptions

log = logging.getLogger("boostkernel.schedule")
_OPTION_FIELDS = ("priority", "expires", "max_retries", "timeout", "dedup_key")


def index_key(queue: str) -> str:
    return f"schedule:{queue}"


def tick_key(queue: str, schedule_id: str, tick: float) -> str:
    return f"schedule-tick:{queue}:{schedule_id}:{tick:.3f}"


# --- triggers -----------------------------------------------------------------------------------
def local_timezone() -> str:
    try:
        import tzlocal

        return str(tzlocal.get_localzone_name() or "UTC")
    except Exception:  # noqa: BLE001 - no tz database: UTC
        return "UTC"


def make_trigger(trigger: Mapping[str, Any], timezone: str) -> Any:
    """The APScheduler trigger of a saved definition (raises ConfigError with the fix if invalid)."""
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.date import DateTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    try:
        from zoneinfo import ZoneInfo

        tz = ZoneInfo(timezone)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"unknown timezone {timezone!r}: use an IANA name such as 'UTC' or 'Europe/Paris'") from exc
    try:
        if "cron" in trigger:
            fields = str(trigger["cron"]).split()
            if len(fields) == 5:
                return CronTrigger.from_crontab(trigger["cron"], timezone=tz)
            if len(fields) == 6:
                sec, minute, hour, day, month, dow = fields
                return CronTrigger(second=sec, minute=minute, hour=hour, day=day, month=month, day_of_week=dow,
                                   timezone=tz)
            raise ValueError(f"expected 5 fields (minute hour day month weekday) or 6 (seconds first), "
                             f"got {len(fields)}")
        if "interval" in trigger:
            start = _dt.datetime.fromtimestamp(float(trigger["start"]), tz)
            return IntervalTrigger(seconds=float(trigger["interval"]), start_date=start, timezone=tz)
        if "at" in trigger:
            return DateTrigger(run_date=_dt.datetime.fromtimestamp(float(trigger["at"]), tz), timezone=tz)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"invalid schedule {dict(trigger)!r}: {exc}") from None
    raise ConfigError(f"invalid schedule {dict(trigger)!r}: expected 'cron', 'interval' or 'at'")


# --- definitions --------------------------------------------------------------------------------
def _lock(store: Any, queue: str) -> str:
    owner = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
    deadline = time.monotonic() + 10
    while not store.acquire_lock(f"schedule-index:{queue}", owner, ttl=10):
        if time.monotonic() > deadline:
            raise TimeoutError(f"could not lock the schedule index of queue {queue!r} within 10 s")
        time.sleep(0.02)
    return owner


def add_schedule(booster: Any, *, cron: str | None = None, interval: float | None = None, at: Any = None,
                 args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, id: str | None = None,  # noqa: A002
                 options: TaskOptions | None = None, timezone: str | None = None) -> str:
    """Save a schedule for ``booster`` (validated now: trigger, arguments, options); return its id."""
    given = [n for n, v in (("cron", cron), ("interval", interval), ("at", at)) if v is not None]
    if len(given) != 1:
        raise ConfigError("schedule() needs exactly one of cron='*/5 * * * *', interval=seconds or at=datetime "
                          f"(got {', '.join(given) or 'none'})")
    tz = timezone or local_timezone()
    trigger: dict[str, Any]
    if cron is not None:
        trigger = {"cron": str(cron).strip()}
    elif interval is not None:
        if not isinstance(interval, (int, float)) or isinstance(interval, bool) or interval <= 0:
            raise ConfigError(f"interval={interval!r}: must be a positive number of seconds")
        # The start is fixed now, so every scheduler process computes the very same ticks.
        trigger = {"interval": float(interval), "start": float(int(time.time()))}
    else:
        if isinstance(at, _dt.datetime):
            if at.tzinfo is None:
                from zoneinfo import ZoneInfo

                at = at.replace(tzinfo=ZoneInfo(tz))
            ts = at.timestamp()
        elif isinstance(at, (int, float)) and not isinstance(at, bool):
            ts = float(at)
        else:
            raise ConfigError(f"at={at!r}: must be a datetime or a Unix timestamp")
        trigger = {"at": ts}
    make_trigger(trigger, tz)  # fails now if invalid
    opts: dict[str, Any] = {}
    headers: dict[str, Any] = {}
    if options is not None:
        if options.countdown is not None or options.eta is not None or options.task_id is not None:
            raise ConfigError("a schedule's options cannot set countdown, eta or task_id (the schedule decides them)")
        opts = {k: getattr(options, k) for k in _OPTION_FIELDS if getattr(options, k) is not None}
        headers = dict(options.headers or {})
    call_args, call_kwargs = list(args), dict(kwargs or {})
    # validate the call exactly as a publish would (signature, JSON, per-message options) - without publishing
    booster.message(call_args, dict(call_kwargs), _task_options(opts, headers, None))
    definition: dict[str, Any] = {"trigger": trigger, "timezone": tz, "args": call_args, "kwargs": call_kwargs,
                  "options": opts, "headers": headers}
    if id is None:
        digest = hashlib.sha256(orjson.dumps({k: v for k, v in definition.items() if k != "trigger"} | {
            "trigger": {k: v for k, v in trigger.items() if k != "start"}}, option=orjson.OPT_SORT_KEYS))
        id = f"{next(iter(trigger))}-{digest.hexdigest()[:12]}"  # noqa: A001
    definition["id"] = id
    definition["queue"] = booster.queue
    definition["created_at"] = time.time()
    store = booster.store
    owner = _lock(store, booster.queue)
    try:
        index = store.get(index_key(booster.queue)) or {}
        old = index.get(id)
        if old is not None and "interval" in trigger and "interval" in old["trigger"] \
                and old["trigger"]["interval"] == trigger["interval"]:
            trigger["start"] = old["trigger"]["start"]  # same interval again: keep its phase
        if old is not None:
            definition["created_at"] = old.get("created_at", definition["created_at"])
        index[id] = definition
        store.set(index_key(booster.queue), index)
    finally:
        store.release_lock(f"schedule-index:{booster.queue}", owner)
    return id


def remove_schedule(booster: Any, schedule_id: str) -> bool:
    store = booster.store
    owner = _lock(store, booster.queue)
    try:
        index = store.get(index_key(booster.queue)) or {}
        found = index.pop(schedule_id, None) is not None
        store.set(index_key(booster.queue), index)
    finally:
        store.release_lock(f"schedule-index:{booster.queue}", owner)
    return found


def set_schedule_paused(booster: Any, schedule_id: str, paused: bool = True) -> bool:
    """Pause (or resume) the schedule ``schedule_id``: a paused schedule stays saved but fires no tick.
    True if it exists."""
    store = booster.store
    owner = _lock(store, booster.queue)
    try:
        index = store.get(index_key(booster.queue)) or {}
        d = index.get(schedule_id)
        if d is None:
            return False
        if paused:
            d["paused"] = True
        else:
            d.pop("paused", None)
        store.set(index_key(booster.queue), index)
    finally:
        store.release_lock(f"schedule-index:{booster.queue}", owner)
    return True


def run_schedule_now(booster: Any, schedule_id: str) -> Any:
    """Publish the call of schedule ``schedule_id`` once, now (outside its trigger); return its
    ``AsyncResult``, or ``None`` if there is no such schedule."""
    d = (booster.store.get(index_key(booster.queue)) or {}).get(schedule_id)
    if d is None:
        return None
    headers = dict(d.get("headers") or {})
    headers["schedule"] = {"id": schedule_id, "tick": None, "manual": True}
    return booster.publish(d.get("kwargs") or {}, _task_options(d.get("options") or {}, headers, None),
                           args=d.get("args") or ())


def list_schedules(booster: Any) -> list[dict[str, Any]]:
    index = booster.store.get(index_key(booster.queue)) or {}
    return [index[k] for k in sorted(index)]


def _task_options(opts: Mapping[str, Any], headers: Mapping[str, Any], task_id: str | None) -> TaskOptions:
    return TaskOptions(task_id=task_id, headers=dict(headers) or None, **{k: opts[k] for k in _OPTION_FIELDS if k in opts})


def tick_task_id(queue: str, schedule_id: str, tick: float) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"boostkernel-schedule:{queue}/{schedule_id}/{tick:.3f}"))


# --- the scheduler --------------------------------------------------------------------------------
class Scheduler:
    """Publishes the saved schedules of ``boosters``; reloads them from the store every ``refresh`` s.

    Run any number of these (on one host with the SQLite store, across hosts with Redis): each tick is
    claimed in the store before it is published, so it fires once.
    """

    def __init__(self, boosters: Sequence[Any], refresh: float = 5.0, misfire_grace_time: float = 60.0) -> None:
        if not boosters:
            raise ConfigError("a scheduler needs at least one booster")
        self.boosters = {b.queue: b for b in boosters}
        self.refresh = refresh
        self.misfire_grace_time = misfire_grace_time
        self.claim_ttl = max(600.0, 2 * misfire_grace_time)
        self._loaded: dict[str, bytes] = {}  # APScheduler job id -> the definition it was built from
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.fired = 0
        """Ticks this scheduler published (not those other schedulers claimed)."""
        from apscheduler.executors.base import BaseExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        outer = self

        class _TickExecutor(BaseExecutor):  # type: ignore[misc]
            """Receives each due job with its scheduled run times (APScheduler's run_job does not)."""

            def _do_submit_job(self, job: Any, run_times: list[_dt.datetime]) -> None:
                try:
                    for rt in run_times:
                        outer._fire(job.args[0], job.args[1], rt)
                except Exception as exc:  # noqa: BLE001 - logged; the scheduler keeps running
                    log.exception("schedule %s failed", job.id)
                    self._run_job_error(job.id, exc)
                    return
                self._run_job_success(job.id, [])

        self._sched = BackgroundScheduler(
            executors={"default": _TickExecutor()}, timezone="UTC",
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": int(misfire_grace_time)},
        )

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> Scheduler:
        self.sync()
        self._sched.start()
        self._thread = threading.Thread(target=self._refresh_loop, daemon=True, name="boostkernel-schedule-refresh")
        self._thread.start()
        log.info("scheduler %s:%s running the schedules of %s", socket.gethostname(), os.getpid(),
                 ", ".join(self.boosters))
        return self

    def stop(self) -> None:
        self._stop.set()
        try:
            self._sched.shutdown(wait=True)
        except Exception:  # noqa: BLE001 - not running
            pass
        if self._thread is not None:
            self._thread.join(5)

    def run_forever(self) -> None:
        """Start and block until :meth:`stop` (SIGTERM/SIGINT in the CLI)."""
        self.start()
        try:
            while not self._stop.wait(0.5):
                pass
        finally:
            self.stop()

    def _refresh_loop(self) -> None:
        n = 0
        while not self._stop.wait(self.refresh):
            try:
                self.sync()
                n += 1
                if n % 60 == 0:
                    for b in self.boosters.values():  # drop expired tick claims (SQLite keeps rows until then)
                        expire = getattr(b.store, "expire", None)
                        if callable(expire):
                            expire()
            except Exception:  # noqa: BLE001 - the store may be down for a while: keep the jobs we have
                log.warning("could not reload schedules; keeping the current ones", exc_info=True)

    # --- syncing definitions into APScheduler jobs ------------------------------------------------
    def sync(self) -> None:
        wanted: dict[str, dict[str, Any]] = {}
        for queue, b in self.boosters.items():
            for d in (b.store.get(index_key(queue)) or {}).values():
                wanted[f"{queue}:{d['id']}"] = d
        for job_id in list(self._loaded):
            if job_id not in wanted:
                self._remove(job_id)
        for job_id, d in wanted.items():
            raw = orjson.dumps(d, option=orjson.OPT_SORT_KEYS)
            if self._loaded.get(job_id) == raw:
                continue
            if job_id in self._loaded:
                self._remove(job_id)
            try:
                trigger = make_trigger(d["trigger"], d.get("timezone", "UTC"))
            except ConfigError as exc:
                log.error("schedule %s is invalid and skipped: %s", job_id, exc)
                self._loaded[job_id] = raw
                continue
            self._sched.add_job(_noop, trigger=trigger, args=(d["queue"], d["id"]), id=job_id, name=job_id,
                                replace_existing=True)
            self._loaded[job_id] = raw

    def _remove(self, job_id: str) -> None:
        self._loaded.pop(job_id, None)
        try:
            self._sched.remove_job(job_id)
        except Exception:  # noqa: BLE001 - already gone (a date schedule that fired)
            pass

    # --- one tick -------------------------------------------------------------------------------
    def _fire(self, queue: str, schedule_id: str, run_time: _dt.datetime) -> bool:
        b = self.boosters[queue]
        tick = run_time.timestamp()
        if time.time() - tick > self.misfire_grace_time:
            return False
        d = orjson.loads(self._loaded.get(f"{queue}:{schedule_id}", b"null"))
        if d is None or d.get("paused"):
            return False
        if not b.store.set(tick_key(queue, schedule_id, tick), {"by": f"{socket.gethostname()}:{os.getpid()}"},
                           ttl=self.claim_ttl, only_if_absent=True):
            return False  # another scheduler has this tick
        headers = dict(d.get("headers") or {})
        headers["schedule"] = {"id": schedule_id, "tick": tick}
        r = b.publish(d.get("kwargs") or {}, _task_options(d.get("options") or {}, headers,
                                                          tick_task_id(queue, schedule_id, tick)),
                      args=d.get("args") or ())
        self.fired += 1
        queue_logger(queue).info("schedule %s fired for %s (task %s)", schedule_id,
                                 run_time.isoformat(timespec="seconds"), r.task_id)
        return True


def _noop(queue: str, schedule_id: str) -> None:  # pragma: no cover - the TickExecutor never calls it
    """Placeholder job function: ticks are handled by the scheduler's executor, which knows the run time."""
