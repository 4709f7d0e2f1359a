"""celery as a boostkernel broker: one celery task per booster (named after the queue), celery's own worker.

One ``Celery`` app per broker URL (``broker_url``: ``redis://…`` or ``amqp://…``), JSON only, late acks.
Parameter mapping (``@boost`` → celery task option):

* ``max_retries`` + ``retry_on`` → ``max_retries`` + ``autoretry_for``;
* ``retry_backoff`` (whole seconds; 0 = retry at once) / ``retry_backoff_max`` / ``retry_jitter`` →
  ``retry_backoff`` / ``retry_backoff_max`` / ``retry_jitter`` (``default_retry_delay=0``);
* ``qps`` → ``rate_limit="<qps>/s"`` (per worker, as celery documents; ``qps_scope="global"`` is refused);
* ``expires`` and per-message ``expires`` → ``expires``; ``countdown``/``eta`` → ``eta``; ``priority`` →
  ``priority`` (effective only where the queue is set up for priorities);
* ``timeout`` is refused: boostkernel runs celery's worker in-process with the threads pool, where celery
  enforces no time limit.

``broker_options``: ``task_options`` (dict for ``app.task``), ``app_config`` (dict for ``app.conf.update``,
e.g. ``{"broker_transport_options": {"visibility_timeout": 600}}``), ``pool`` (``"threads"`` or ``"solo"``).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import replace
from typing import Any

from celery import Celery, _state

from boostkernel.errors import ConfigError
from boostkernel.framework import (
    FrameworkBroker,
    FrameworkWorker,
    TaskRunner,
    by_url,
    eta_of,
    worker_count,
)
from boostkernel.logs import mask_url
from boostkernel.message import Envelope

_apps: dict[str, Celery] = {}
_apps_lock = threading.Lock()


def app_for(url: str, options: dict[str, Any]) -> Celery:
    """The boostkernel celery app of ``url`` (shared by every booster on that broker in this process)."""
    app = _apps.get(url)
    if app is None:
        with _apps_lock:
            app = _apps.get(url)
            if app is None:
                app = Celery("boostkernel", broker=url, set_as_current=False)
                app.conf.update(
                    task_serializer="json", accept_content=["json"], result_serializer="json",
                    result_backend=None, task_ignore_result=True,
                    task_acks_late=True,  # ack after the task ran: at-least-once
                    worker_prefetch_multiplier=1, broker_connection_retry_on_startup=True,
                    worker_hijack_root_logger=False, worker_redirect_stdouts=False,
                    task_create_missing_queues=True, enable_utc=True, worker_enable_remote_control=False,
                )
                app.conf.update(options.get("app_config") or {})
                _apps[url] = app
    return app


class _SharedWorker:
    """The one in-process celery worker of an app. celery's embedded worker does not survive being stopped
    and started again in one process (the second one receives tasks but never runs them), so boostkernel
    starts one per broker URL and adds/cancels queues on it: ``Booster.stop()`` cancels its queue."""

    def __init__(self, app: Celery, queues: list[str], concurrency: int, pool: str) -> None:
        from celery.utils.nodenames import anon_nodename
        from celery.worker import WorkController

        # celery's pool threads trace tasks through the *default* app (trace_task_ret looks the task up in
        # current_app), and a retry republishes through the app of the task instance found there. Unless the
        # worker's app is the default, retries go to celery's built-in default broker (amqp://localhost)
        # and are lost to this worker. One process consumes one celery broker URL, so this is unambiguous.
        app.set_default()

        self.controller = WorkController(
            app=app, queues=queues, concurrency=concurrency, pool=pool, hostname=anon_nodename(),
            without_heartbeat=True, without_mingle=True, without_gossip=True, loglevel="WARNING",
        )
        self.queues = set(queues)
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.controller.start, name="boostkernel-celery-worker", daemon=True)
        self.thread.start()

    def _consumer(self, timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            c = getattr(self.controller, "consumer", None)
            hub = getattr(self.controller, "hub", None)
            if c is not None and getattr(c, "task_consumer", None) is not None and hub is not None:
                return c, hub
            time.sleep(0.02)
        raise RuntimeError("celery's worker did not start within 10 s")

    def add(self, queues: list[str]) -> None:
        with self.lock:
            todo = [q for q in queues if q not in self.queues]
            if not todo:
                return
            consumer, hub = self._consumer()
            from celery.app.trace import reset_worker_optimizations

            reset_worker_optimizations(consumer.app)  # its fast path caches the task table at start
            hub.call_soon(consumer.update_strategies)  # tasks registered after the worker started
            for q in todo:
                _in_loop(hub, consumer.add_task_queue, q)
                self.queues.add(q)

    def cancel(self, queues: list[str], timeout: float) -> None:
        from celery.worker import state

        with self.lock:
            consumer, hub = self._consumer()
            for q in queues:
                if q in self.queues:
                    _in_loop(hub, consumer.cancel_task_queue, q)
                    self.queues.discard(q)
        names = set(queues)
        deadline = time.monotonic() + timeout  # let the queues' running tasks finish
        while time.monotonic() < deadline and any(r.name in names for r in list(state.active_requests)):
            time.sleep(0.05)


def _in_loop(hub: Any, fn: Any, *args: Any, timeout: float = 10.0) -> None:
    """Run ``fn(*args)`` in the worker's event-loop thread (celery's consumer is not thread-safe); wait for it."""
    done = threading.Event()
    error: list[BaseException] = []

    def call() -> None:
        try:
            fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            error.append(exc)
        finally:
            done.set()

    hub.call_soon(call)
    if not done.wait(timeout):
        raise TimeoutError(f"celery's worker loop did not run {getattr(fn, '__name__', fn)} within {timeout}s")
    if error:
        raise error[0]


_workers: dict[str, _SharedWorker] = {}
_workers_lock = threading.Lock()


class CeleryWorker(FrameworkWorker):
    def __init__(self, name: str, shared: _SharedWorker, queues: list[str]) -> None:
        super().__init__(name)
        self.shared, self.queues = shared, queues

    def _stop_worker(self, timeout: float) -> None:
        self.shared.cancel(self.queues, timeout)


class CeleryBroker(FrameworkBroker):
    name = "celery"
    # the framework brokers' common capabilities (FrameworkBroker), plus what this framework adds
    capabilities = replace(FrameworkBroker.capabilities, ack=True, durable=True)
    url_schemes = ("redis", "rediss", "amqp", "amqps", "pyamqp")
    framework_params = frozenset({"max_retries", "retry_on", "retry_backoff", "retry_backoff_max", "retry_jitter",
                                  "qps", "qps_scope", "expires", "retry_mode"})
    unsupported_reasons = {
        "timeout": "celery enforces time limits only in its prefork/gevent/eventlet pools, and boostkernel runs "
                   "celery's worker in-process with the threads pool (use dramatiq or rq for timeouts)",
    }
    @classmethod
    def honours_priority(cls, p: Any) -> bool:
        """celery orders by priority on RabbitMQ when its queues are declared with ``x-max-priority``
        (``app_config={"task_queue_max_priority": 9}``); on Redis it does not here (one list per queue)."""
        url = (p.broker_url or "").lower()
        return url.startswith("amqp") and bool((p.broker_options.get("app_config") or {}).get("task_queue_max_priority"))

    option_names = frozenset({"task_options", "app_config", "pool"})
    message_options = frozenset({"eta", "expires", "priority"})

    @classmethod
    def check_framework_params(cls, p: Any) -> None:
        if p.qps_scope == "global":
            raise ConfigError(f"@boost({p.queue!r}, broker='celery'): qps_scope='global' cannot be honoured: "
                              "celery's rate_limit is per worker (use qps_scope='process')")
        if p.retry_backoff and p.retry_backoff != int(p.retry_backoff):
            raise ConfigError(f"@boost({p.queue!r}, broker='celery'): retry_backoff={p.retry_backoff!r} cannot be "
                              "honoured: celery's backoff factor is a whole number of seconds (use 1, 2, …)")
        pool = p.broker_options.get("pool", "threads")
        if pool not in ("threads", "solo"):
            raise ConfigError(f"@boost({p.queue!r}, broker='celery'): pool={pool!r}: the in-process worker runs "
                              "'threads' or 'solo'")

    @classmethod
    def register(cls, booster: Any) -> Any:
        p = booster.params
        app = app_for(p.broker_url, p.broker_options)
        runner: list[TaskRunner] = []

        def run(task: Any, *args: Any, **kwargs: Any) -> Any:
            if not runner:
                runner.append(TaskRunner(booster))
            if _state.get_current_app() is not app:  # thread-local: retries publish through this app
                app.set_current()
            req = task.request
            return runner[0].run(req.id, args, kwargs, int(req.retries or 0))

        run.__name__ = run.__qualname__ = booster.queue
        opts: dict[str, Any] = {
            "name": booster.queue, "bind": True, "ignore_result": True, "acks_late": True, "shared": False,
            "max_retries": p.max_retries, "default_retry_delay": 0,
            "autoretry_for": tuple(p.retry_on) if p.max_retries else (),
            "retry_backoff": int(p.retry_backoff) if p.retry_backoff else False,
            "retry_backoff_max": int(p.retry_backoff_max), "retry_jitter": p.retry_jitter,
        }
        if p.qps:
            opts["rate_limit"] = f"{p.qps}/s"
        opts.update(p.broker_options.get("task_options") or {})
        task = app.task(**opts)(run)
        routes = dict(app.conf.task_routes or {})
        routes[booster.queue] = {"queue": booster.queue}
        app.conf.task_routes = routes
        return task

    @classmethod
    def _start_worker(cls, boosters: list[Any]) -> FrameworkWorker:
        groups = by_url(boosters)
        with _workers_lock:
            running = next(iter(_workers), None)
            urls = set(groups) | ({running} if running else set())
            if len(urls) > 1:
                raise ConfigError(
                    "celery's worker runs once per process (its event loop is process-global and it cannot be "
                    f"restarted in-process), so one process consumes one celery broker URL; this one consumes "
                    f"{mask_url(running or next(iter(groups)))!r}. Consume the boosters of "
                    f"{sorted(str(mask_url(u)) for u in urls)} in separate processes (e.g. `boostkernel worker` "
                    "with --queues, or processes=N)")
            url, group = next(iter(groups.items()))
            queues = [b.queue for b in group]
            shared = _workers.get(url)
            if shared is None:
                app = app_for(url, group[0].params.broker_options)
                shared = _workers[url] = _SharedWorker(
                    app, queues, worker_count(group), group[0].params.broker_options.get("pool", "threads"))
            else:
                shared.add(queues)
        return CeleryWorker(f"celery:{','.join(queues)}@{mask_url(url)}", shared, queues)

    # --- instance side ----------------------------------------------------------------------------
    @property
    def app(self) -> Celery:
        return app_for(self.url or "", self.options)

    def send(self, env: Envelope) -> None:
        task = self.app.tasks[self.queue]
        opts: dict[str, Any] = {"task_id": env.id, "queue": self.queue}
        eta = eta_of(env)
        if eta is not None:
            opts["eta"] = dt.datetime.fromtimestamp(eta, dt.timezone.utc)
        expires = env.options.get("expires") or (self.params.expires if self.params else None)
        if expires:
            opts["expires"] = float(expires)
        if "priority" in env.options:
            opts["priority"] = int(env.options["priority"])
        # celery-types annotates args as a tuple; celery takes any list or tuple (it is JSON on the wire)
        task.apply_async(args=env.args, kwargs=env.kwargs, **opts)  # type: ignore[arg-type]

    def count(self) -> int:
        with self.app.connection_for_write() as conn:
            try:
                # the channel is the transport's (py-amqp, kombu virtual); celery-types' StdChannel omits these
                channel: Any = conn.default_channel
                return int(channel.queue_declare(queue=self.queue, passive=True).message_count)
            except Exception as exc:  # noqa: BLE001 - a queue never declared holds nothing
                if "NOT_FOUND" in str(exc) or "404" in str(exc):
                    return 0
                raise

    def purge(self) -> int:
        with self.app.connection_for_write() as conn:
            try:
                channel: Any = conn.default_channel
                return int(channel.queue_purge(self.queue) or 0)
            except Exception as exc:  # noqa: BLE001
                if "NOT_FOUND" in str(exc) or "404" in str(exc):
                    return 0
                raise

    def describe(self) -> dict[str, Any]:
        import celery

        return {**super().describe(), "framework": "celery", "celery": celery.__version__}
