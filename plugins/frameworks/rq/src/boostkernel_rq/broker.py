"""rq as a boostkernel broker: one rq queue per booster, rq's own worker (``SimpleWorker`` threads).

Every job calls the one fixed function :func:`run_job` with the queue name first; the worker refuses any
other function name (:class:`SafeJob`), so a message can never make the worker import something. Jobs
are JSON (``rq.serializers.JSONSerializer``).

Parameter mapping (``@boost`` → rq):

* ``max_retries`` → ``Retry(max=...)``; ``retry_backoff``/``retry_backoff_max``/``retry_jitter`` →
  ``Retry(interval=[...])``, exponential intervals (whole seconds, jittered at publish);
  ``retry_on`` → a non-matching exception sets ``job.retries_left = 0`` before rq sees it;
* ``timeout`` → ``job_timeout`` (``TimerDeathPenalty``: the worker thread gets ``JobTimeoutException``);
* ``expires``, per-message ``expires`` → ``ttl``; ``countdown``/``eta`` → ``enqueue_at`` (rq's
  ScheduledJobRegistry in Redis, moved by the scheduler thread every second).

``broker_options``: ``job_options`` (dict merged into ``enqueue_call``, e.g. ``{"failure_ttl": 86400}``),
``worker_ttl`` (seconds, rq's worker heartbeat key lifetime; default 60).
"""

from __future__ import annotations

import datetime as dt
import math
import random
import threading
import time
from dataclasses import replace
from typing import Any

import redis
from rq import Queue, SimpleWorker
from rq.job import Job, Retry, get_current_job
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer
from rq.timeouts import TimerDeathPenalty

from boostkernel.errors import ConfigError
from boostkernel.framework import FrameworkBroker, FrameworkWorker, TaskRunner, by_url, eta_of, worker_count
from boostkernel.logs import mask_url
from boostkernel.message import Envelope

RUN_JOB = "boostkernel_rq.broker.run_job"
DEFAULT_WORKER_TTL = 60

_connections: dict[str, redis.Redis] = {}
_runners: dict[str, tuple[Any, TaskRunner]] = {}
_lock = threading.Lock()


class SafeJob(Job):
    """An rq job that only ever runs :func:`run_job` (rq would import any ``module.function`` it is sent)."""

    @property
    def func(self) -> Any:
        if self.func_name != RUN_JOB:
            raise ValueError(f"refusing job {self.id}: function {self.func_name!r} is not {RUN_JOB!r}")
        return run_job


def connection(url: str) -> redis.Redis:
    c = _connections.get(url)
    if c is None:
        with _lock:
            c = _connections.get(url)
            if c is None:
                c = _connections[url] = redis.Redis.from_url(url)
    return c


def worker_connection(url: str, workers: int) -> redis.Redis:
    """The worker's own pool. Each rq worker thread holds one connection in BLMOVE and one in its command
    subscription, and finishing a job takes two more at once (a WATCHed pipeline plus the job's status
    read), so the pool allows ``4 × workers`` plus the scheduler and heartbeats. It is a *blocking* pool: at
    the limit a thread waits for a free connection instead of failing the job in rq's finalization."""
    pool = redis.BlockingConnectionPool.from_url(url, max_connections=4 * workers + 16, timeout=30)
    return redis.Redis(connection_pool=pool)


def runner(queue: str) -> TaskRunner:
    """The runner of the booster of ``queue`` in this process (a dict lookup, never an import)."""
    from boostkernel.registry import REGISTRY

    booster = REGISTRY.get(queue)
    if booster is None:
        raise LookupError(f"no booster for queue {queue!r} in this worker process")
    entry = _runners.get(queue)
    if entry is None or entry[0] is not booster:
        entry = _runners[queue] = (booster, TaskRunner(booster))
    return entry[1]


def run_job(queue: str, *args: Any, **kwargs: Any) -> Any:
    """The function every boostkernel rq job calls."""
    r = runner(queue)
    job = get_current_job()
    if job is None:  # pragma: no cover - only called by rq's worker
        raise RuntimeError("run_job outside an rq job")
    max_retries = r.max_retries
    attempt = max_retries - (job.retries_left or 0) if max_retries else 0
    published = job.enqueued_at or job.created_at

    def retrying(exc: BaseException) -> bool:
        if not isinstance(exc, r.retry_on):
            job.retries_left = 0  # rq would retry every exception: honour retry_on
            return False
        return bool(job.retries_left and job.retries_left > 0)

    return r.run(job.id, args, kwargs, attempt, published.timestamp() if published else None, retrying)


def retry_for(p: Any) -> Retry | None:
    if not p.max_retries:
        return None
    if not p.retry_backoff:
        return Retry(max=p.max_retries)
    intervals = []
    for i in range(p.max_retries):
        d = min(p.retry_backoff_max, p.retry_backoff * 2**i)
        if p.retry_jitter:
            d = random.uniform(d / 2, d)
        intervals.append(max(1, math.ceil(d)))
    return Retry(max=p.max_retries, interval=intervals)


class _Worker(SimpleWorker):
    """rq's in-process worker, run in a thread: no signal handlers (only the main thread may set them)."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        pass

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        # rq's loop only checks for a stop request between jobs: wait in 1 s slices so stop() is prompt
        while not self._stop_requested:
            result = super().dequeue_job_and_maintain_ttl(1, max_idle_time=1)
            if result is not None:
                return result
        return None


class RQWorker(FrameworkWorker):
    def __init__(self, name: str, workers: list[_Worker], threads: list[threading.Thread],
                 scheduler_stop: threading.Event, scheduler_thread: threading.Thread) -> None:
        super().__init__(name)
        self.workers, self.threads = workers, threads
        self.scheduler_stop, self.scheduler_thread = scheduler_stop, scheduler_thread

    def _stop_worker(self, timeout: float) -> None:
        for w in self.workers:
            w._stop_requested = True  # checked between jobs: running jobs finish
        self.scheduler_stop.set()
        deadline = time.monotonic() + timeout
        for t in [*self.threads, self.scheduler_thread]:
            t.join(max(0.0, deadline - time.monotonic()))


def _scheduler_loop(queues: list[Queue], conn: redis.Redis, stop: threading.Event) -> None:
    """Move due scheduled jobs (countdown/eta, retry intervals) to their queues, every second, under rq's lock."""
    import logging

    from rq.scheduler import RQScheduler

    log = logging.getLogger("boostkernel.rq")
    scheduler = RQScheduler(queues, connection=conn, serializer=JSONSerializer)
    try:
        while not stop.is_set():
            try:
                if not scheduler.acquired_locks:
                    scheduler.acquire_locks()
                if scheduler.acquired_locks:
                    scheduler.enqueue_scheduled_jobs()
            except redis.RedisError as exc:
                log.warning("rq scheduler: %s", exc)
            stop.wait(1.0)
    finally:
        try:
            scheduler.release_locks()
        except redis.RedisError:
            pass


class RQBroker(FrameworkBroker):
    name = "rq"
    # the framework brokers' common capabilities (FrameworkBroker), plus what this framework adds
    capabilities = replace(FrameworkBroker.capabilities, delay=True, durable=True)
    framework_params = frozenset({"max_retries", "retry_on", "retry_backoff", "retry_backoff_max", "retry_jitter",
                                  "timeout", "expires", "retry_mode"})
    unsupported_reasons = {
        "qps": "rq has no rate limit (its RateLimit limits concurrency, not starts per second)",
    }
    option_names = frozenset({"job_options", "worker_ttl"})
    message_options = frozenset({"eta", "expires"})

    @classmethod
    def check_framework_params(cls, p: Any) -> None:
        if p.timeout is not None and p.timeout < 1:
            raise ConfigError(f"@boost({p.queue!r}, broker='rq'): timeout={p.timeout!r} cannot be honoured: "
                              "rq's job timeout is a whole number of seconds >= 1")

    @classmethod
    def register(cls, booster: Any) -> Any:
        return RUN_JOB  # rq registers nothing: the worker finds the booster by queue name

    @classmethod
    def _start_worker(cls, boosters: list[Any]) -> FrameworkWorker:
        parts: list[FrameworkWorker] = []
        for url, group in by_url(boosters).items():
            conn = worker_connection(url, worker_count(group))
            ttl = int(group[0].params.broker_options.get("worker_ttl", DEFAULT_WORKER_TTL))
            queues = [Queue(b.queue, connection=conn, serializer=JSONSerializer, job_class=SafeJob) for b in group]
            workers = [_Worker(queues, connection=conn, serializer=JSONSerializer, job_class=SafeJob,
                               worker_ttl=ttl) for _ in range(worker_count(group))]
            threads = [threading.Thread(target=w.work, kwargs={"logging_level": "WARNING"},
                                        name=f"rq-worker-{i}", daemon=True) for i, w in enumerate(workers)]
            for t in threads:
                t.start()
            stop = threading.Event()
            sched = threading.Thread(target=_scheduler_loop, args=(queues, conn, stop), name="rq-scheduler",
                                     daemon=True)
            sched.start()
            parts.append(RQWorker(f"rq:{','.join(b.queue for b in group)}@{mask_url(url)}", workers, threads,
                                  stop, sched))
        if len(parts) == 1:
            return parts[0]
        from boostkernel.framework import GroupWorker

        return GroupWorker("rq", parts)

    # --- instance side ----------------------------------------------------------------------------
    @property
    def rq_queue(self) -> Queue:
        q = getattr(self, "_rq_queue", None)
        if q is None:
            q = self._rq_queue = Queue(self.queue, connection=connection(self.url or ""), serializer=JSONSerializer,
                                       job_class=SafeJob)
        return q

    def send(self, env: Envelope) -> None:
        p = self.params
        opts: dict[str, Any] = {"job_id": env.id, "result_ttl": 0, "retry": retry_for(p) if p else None}
        if p is not None:
            opts["failure_ttl"] = int(p.result_ttl)
            if p.timeout:
                opts["timeout"] = int(math.ceil(p.timeout))
        expires = env.options.get("expires") or (p.expires if p else None)
        if expires:
            opts["ttl"] = max(1, int(math.ceil(float(expires))))
        if p is not None:
            opts.update(p.broker_options.get("job_options") or {})
        args = (self.queue, *env.args)
        eta = eta_of(env)
        if eta is None:
            self.rq_queue.enqueue_call(RUN_JOB, args=args, kwargs=env.kwargs, **opts)
        else:
            job = self.rq_queue.create_job(RUN_JOB, args=args, kwargs=env.kwargs, **opts)
            # rq scores scheduled jobs in whole seconds (rounding down): round up so a job never runs early
            self.rq_queue.schedule_job(job, dt.datetime.fromtimestamp(math.ceil(eta), dt.timezone.utc))

    def count(self) -> int:
        q = self.rq_queue
        return int(q.count) + ScheduledJobRegistry(queue=q).count

    def purge(self) -> int:
        q = self.rq_queue
        n = self.count()
        q.empty()
        reg = ScheduledJobRegistry(queue=q)
        for job_id in reg.get_job_ids():
            reg.remove(job_id, delete_job=True)
        return n

    def describe(self) -> dict[str, Any]:
        import rq

        return {**super().describe(), "framework": "rq", "rq": rq.__version__}

