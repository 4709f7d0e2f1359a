"""The consume loop: fetch → gate → submit to the executor → run the chain → ack.

One :class:`Consumer` per booster per process. A dispatch thread fetches batches (at most ``prefetch``)
and hands each delivery to the executor, whose ``submit`` blocks when the pool is full (back-pressure).
The per-message work is one plain function (``_run``) over lists prepared at start: no hook dispatch,
and no work for controls that are off.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from contextvars import copy_context
from typing import TYPE_CHECKING, Any

from .broker import Broker, Delivery, Outgoing
from .context import Outcome, TaskContext, _current, current_task, outcome_of, worker_id
from .control import Control, overrides
from .errors import DeadLetter, MessageDecodeError, Requeue, Retry, Skip
from .executor import Executor
from .logs import current_task_id, install_task_record_factory, queue_logger
from .message import Envelope, decode
from .modes import check_can_start
from .running import add_consumer, running_consumers, stop_all
from .signals import install_signal_handlers
from .signing import Signer, open_envelope

if TYPE_CHECKING:
    from .booster import Booster

__all__ = ["Consumer", "current_task", "worker_id", "start_consumer", "running_consumers", "stop_all",
           "DEFAULT_RETRY_LIMIT"]

#: Without the retry control, a task raising :class:`~boostkernel.Retry` is published again at most this
#: many times, then dead-lettered (``BOOSTKERNEL_RETRY_LIMIT``; the retry control's ``max_retries`` decides
#: instead when it is on).
DEFAULT_RETRY_LIMIT = int(os.environ.get("BOOSTKERNEL_RETRY_LIMIT", "3"))

# Module constants: looking a member up on the enum class costs about a microsecond per access.
_SUCCESS, _FAILURE, _RETRY, _REQUEUED, _DEAD = (Outcome.SUCCESS, Outcome.FAILURE, Outcome.RETRY, Outcome.REQUEUED,
                                                Outcome.DEAD)
_ACKED = (Outcome.SUCCESS, Outcome.DUPLICATE, Outcome.SKIPPED, Outcome.EXPIRED, Outcome.REVOKED)


class _Job:
    __slots__ = ("consumer", "delivery")

    def __init__(self, consumer: Consumer, delivery: Delivery) -> None:
        self.consumer, self.delivery = consumer, delivery

    @property
    def is_async(self) -> bool:
        return self.consumer.booster.is_async

    def run(self) -> None:
        c = self.consumer
        try:
            if c._stop.is_set():  # handed over but not started before shutdown: back to the queue, not run
                _safe(c.broker.nack, self.delivery, True)
                return
            if c.started is not None:  # prefetched -> running (crash-loop accounting), only if the broker cares
                c.started(self.delivery)
            c.run_one(self.delivery)
        finally:
            next(c._finished)

    async def run_async(self) -> None:
        c = self.consumer
        try:
            if c._stop.is_set():
                _safe(c.broker.nack, self.delivery, True)
                return
            if c.started is not None:
                c.started(self.delivery)
            await c.run_one_async(self.delivery)
        finally:
            next(c._finished)


class _HandoffJob(_Job):
    """A lone message run on the thread that fetched it: it first hands fetching to the standby thread."""

    __slots__ = ()

    def run(self) -> None:
        c = self.consumer
        c._holder = None
        try:
            c._baton.release()
        except RuntimeError:  # stop() released it already to wake the standby thread
            pass
        _Job.run(self)


class Consumer:
    def __init__(self, booster: Booster[Any, Any]) -> None:
        self.booster = booster
        self.params = p = booster.params
        self.log = queue_logger(booster.queue)
        install_task_record_factory()  # the task id and masking in the user's own log records too
        self.broker: Broker = booster.make_broker()
        #: ``broker.started`` if the broker overrides it (it tracks running vs prefetched), else None.
        self.started: Callable[[Delivery], None] | None = (
            self.broker.started if type(self.broker).started is not Broker.started else None)
        self.executor: Executor = booster.executor_class(p.workers)
        self.controls: list[Control] = booster.make_controls()
        for c in self.controls:
            c.consumer = self
        self.worker_id = worker_id()
        self.running = False
        self.abandoned: list[str] = []
        self.stopped = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        #: Leader/follower fetching: with a broker that can fetch from any thread and a mode that can run a job
        #: on the calling thread, two threads take turns fetching (the baton is the right to fetch). The one
        #: that fetched a lone message runs it itself and hands the baton to the other, so an idle worker's
        #: message starts without waking a pool thread.
        self._handoff = self.broker.capabilities.fetch_any_thread and type(self.executor).run_here is not Executor.run_here
        self._baton = threading.Lock()  # a plain lock: released by one thread, taken by the other (a cheap wake)
        self._holder: threading.Thread | None = None
        self._standing_by = 0  # threads waiting for the baton (under _turns)
        self._turns = threading.Lock()
        self.processed = 0
        #: Tasks running now, by id(ctx) (so stop() can name the ones it abandons).
        self.in_flight: dict[int, TaskContext] = {}
        codec = booster.codec
        #: Rebuild annotated arguments (datetime, UUID …) before the call; JSON-encode the result when it is kept.
        self._decode_args = codec.decode_args if codec.any_typed else None
        self._encode_result = codec.encode_result if p.results else None
        #: Whether a control decides retries (the retry control); otherwise the default limit applies.
        self.retry_owned = any(c.handles_retry for c in self.controls)
        self._submitted = 0  # jobs handed to the executor (dispatch thread only)
        self._finished = itertools.count(1)  # next() is atomic: jobs done, from any thread
        #: ``decode``, or (with ``signing_key``) a decode that first checks the signature: an unsigned or
        #: tampered message is refused before anything of it is read.
        self._decode: Callable[[bytes | str, str], Envelope] = decode
        if booster.signer is not None:
            self._decode = _verifying_decode(booster.signer)
        self._build_chain()

    # --- stopping (public for controls and plugins) ------------------------------------------------
    def is_stopping(self) -> bool:
        """True once :meth:`stop` or :meth:`request_stop` was called."""
        return self._stop.is_set()

    def wait_stopping(self, seconds: float) -> bool:
        """Wait up to ``seconds``, waking when the consumer starts stopping; True if it is stopping."""
        return self._stop.wait(seconds)

    def request_stop(self) -> None:
        """Stop fetching (returns at once); :meth:`stop` waits for the running tasks."""
        self._stop.set()

    # --- the chain ------------------------------------------------------------------------------
    def _build_chain(self) -> None:
        cs = self.controls
        self.gates = [c.gate for c in cs if overrides(c, "gate")]
        self.befores = [c.before for c in cs if overrides(c, "before")]
        self.afters = [c.after for c in cs if overrides(c, "after")]
        fn = self.booster.fn
        kind, owner = self.booster.method_kind, self.booster.owner
        if kind in ("instance", "class"):  # methods as tasks: bind them here (chosen once, not per message)
            raw = fn

            def fn(*args: Any, **kwargs: Any) -> Any:
                if kind == "class":
                    return raw(owner, *args, **kwargs)
                state = args[0] if args else None
                if not isinstance(state, dict):
                    raise DeadLetter(f"{raw.__qualname__} is an instance method: the message's first argument "
                                     f"must be the instance state (a JSON object), got {type(state).__name__}")
                assert owner is not None
                return raw(owner(**state), *args[1:], **kwargs)

        def call(ctx: TaskContext) -> Any:
            e = ctx.envelope
            return fn(*e.args, **e.kwargs)

        invoke: Callable[[TaskContext], Any] = call
        for c in reversed([c for c in cs if overrides(c, "around")]):
            invoke = _wrap(c, invoke)
        self.invoke = invoke

        async def acall(ctx: TaskContext) -> Any:
            e = ctx.envelope
            if self.booster.is_async:
                return await fn(*e.args, **e.kwargs)
            import asyncio

            # copy the context so current_task() works inside the sync function too
            return await asyncio.get_running_loop().run_in_executor(None, copy_context().run, call, ctx)

        ainvoke: Callable[[TaskContext], Awaitable[Any]] = acall
        for c in reversed([c for c in cs if overrides(c, "around_async")]):
            ainvoke = _awrap(c, ainvoke)
        self.ainvoke = ainvoke

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        for c in self.controls:
            c.start()
        self.running = True
        q = self.booster.queue
        if self._handoff:
            self._threads = [threading.Thread(target=self._take_turns, name=f"boostkernel-fetch-{q}-{i}", daemon=True)
                             for i in (1, 2)]
        else:  # stopped by the exit hook (signals.install_exit_hook)
            self._threads = [threading.Thread(target=self._dispatch_loop, name=f"boostkernel-fetch-{q}", daemon=True)]
        self._thread = self._threads[0]
        for t in self._threads:
            t.start()
        self.log.debug("consuming queue %r with %s x%d on %s", self.booster.queue, self.params.concurrency,
                       self.params.workers, self.broker.describe())

    def stop(self, timeout: float = 30.0) -> None:
        """Stop fetching, return prefetched messages, let running tasks finish (up to ``timeout`` s)."""
        if not self.running:
            return
        self._stop.set()
        if self._handoff:
            try:
                self._baton.release()  # the standby thread wakes now (and sees the stop), not at its next timeout
            except RuntimeError:  # not held: being handed over right now
                pass
        deadline = time.monotonic() + timeout
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))
        self.executor.shutdown(wait=True, timeout=max(0.0, deadline - time.monotonic()))
        abandoned = [ctx.envelope.id for ctx in list(self.in_flight.values())]
        if abandoned:
            self.log.warning(
                "queue %r stopped after %ss with %d task(s) still running, abandoned: %s. Their messages are "
                "not acknowledged: the broker delivers them again (a memory broker loses them with the process)",
                self.booster.queue, timeout, len(abandoned), ", ".join(abandoned[:20])
                + (" …" if len(abandoned) > 20 else ""))
        self.abandoned = abandoned
        for c in self.controls:
            try:
                c.stop()
            except Exception:  # noqa: BLE001
                self.log.exception("control %s failed to stop", c.name)
        self.broker.close()
        self.running = False
        self.stopped.set()

    def _take_turns(self) -> None:
        """A fetching thread with a standby (see ``_handoff``): wait for the baton, fetch and dispatch until a lone
        message is run here, then wait again."""
        me, baton, stop, turns = threading.current_thread(), self._baton, self._stop, self._turns
        while not stop.is_set():
            try:
                if self._holder is not me:
                    with turns:
                        self._standing_by += 1
                    try:
                        got = baton.acquire(timeout=1.0)
                    finally:
                        with turns:
                            self._standing_by -= 1
                    if not got:
                        continue
                    self._holder = me
                if not stop.is_set():
                    self._dispatch_loop(lone_here=True)
            except BaseException:  # noqa: BLE001 - e.g. a cancel aimed at a task this thread ran, arriving late
                self.log.exception("fetch thread of queue %r: unexpected error; going on", self.booster.queue)
                stop.wait(0.1)

    def _dispatch_loop(self, lone_here: bool = False) -> None:
        broker, executor, gates, stop = self.broker, self.executor, self.gates, self._stop
        prefetch = max(1, self.params.effective_prefetch)
        park = not broker.capabilities.delay
        seen: set[str] = set()  # ids of not-yet-due messages re-published since the last wait
        backoff = 0.1
        while not stop.is_set():
            try:
                # Always ask for a whole prefetch batch: while it is fetched the pool still runs the previous
                # one, and submit() blocks when the pool is full (back-pressure: at most workers + prefetch held).
                batch = broker.fetch(prefetch, 0.5)
                backoff = 0.1
            except Exception as exc:  # noqa: BLE001 - the loop must survive broker outages
                self.log.warning("fetch from %s failed (%s: %s); retrying in %.1fs", broker.name,
                                 type(exc).__name__, exc, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0) * (0.8 + 0.4 * (time.monotonic() % 1))
                continue
            parked, next_due, cycled = 0, 0.0, False
            for i, delivery in enumerate(batch):
                if park and b'"eta"' in delivery.body:  # broker without native delay: not due yet?
                    due = self._park_if_not_due(delivery)
                    if due:
                        parked += 1
                        next_due = due if not next_due else min(next_due, due)
                        cycled = cycled or delivery.id in seen
                        seen.add(delivery.id)
                        continue
                if gates:
                    for g in gates:
                        g()
                if stop.is_set():  # return what we prefetched but did not start
                    for d in batch[i:]:
                        _safe(broker.nack, d, True)
                    break
                try:
                    if delivery.crashes:  # a worker died while running it: run it alone (see Delivery.crashes)
                        self._wait_idle()
                        self._submitted += 1
                        executor.submit(_Job(self, delivery))
                        self._wait_idle()
                        continue
                    self._submitted += 1
                    # a lone message with the standby thread waiting: run it here (the baton passes first)
                    if lone_here and len(batch) == 1 and self._standing_by and executor.run_here(
                            _HandoffJob(self, delivery)):
                        return
                    executor.submit(_Job(self, delivery))
                except Exception:
                    if not stop.is_set():
                        raise
                    # stop() gave up waiting and shut the pool down while we waited for a free slot: the
                    # rest of the batch goes back to the queue (no traceback: this is a normal stop)
                    for d in batch[i:]:
                        _safe(broker.nack, d, True)
                    return
            if 0 < len(batch) < prefetch:
                # The queue ran dry (an idle worker's case): give the GIL to the pool thread just woken for
                # this batch before going back to the broker. Otherwise the woken thread waits for this one to
                # reach its next blocking read, through the client library's command building (~0.15 ms
                # with redis-py). A full batch means a backlog, where this latency does not matter.
                time.sleep(0)
            # Only future messages, and either the queue had no more or we went round all of them: wait
            # (at most 1 s) instead of spinning. Ready messages behind them are reached first.
            if parked and parked == len(batch) and (len(batch) < prefetch or cycled or len(seen) > 10_000):
                stop.wait(min(1.0, max(0.0, next_due - time.time())))
                seen.clear()

    def _wait_idle(self) -> None:
        """Wait until every job handed to the executor has finished (or the consumer stops)."""
        while not self._stop.is_set() and int(repr(self._finished)[6:-1]) - 1 < self._submitted:
            self._stop.wait(0.005)

    def _park_if_not_due(self, delivery: Delivery) -> float:
        """Delay fallback for brokers without native delay (``capabilities.delay=False``).

        A message whose ``eta`` is in the future is published again (same id, body, priority and eta) at
        the back of the queue and the delivery acked, so it is never held in worker memory and a crash
        loses nothing (at worst a duplicate with the same id). Returns the eta, or 0.0 if it is due.
        """
        try:
            env = self._decode(delivery.body, self.booster.queue)
        except MessageDecodeError:
            return 0.0  # the worker dead-letters it
        eta = env.eta
        if eta is None or eta <= time.time():
            return 0.0
        try:
            self.broker.publish(Outgoing(delivery.id, delivery.body, env.priority, eta))
        except Exception:  # noqa: BLE001 - could not re-publish: give it back instead
            self.log.warning("could not re-publish delayed message %s; returning it to the queue", delivery.id)
            _safe(self.broker.nack, delivery, True, max(0.0, eta - time.time()))
            return eta
        _safe(self.broker.ack, delivery)
        return eta

    # --- running one message ----------------------------------------------------------------------
    def _begin(self, delivery: Delivery) -> TaskContext | None:
        try:
            env = self._decode(delivery.body, self.booster.queue)
        except MessageDecodeError as exc:
            reason = exc.reason if isinstance(exc, SignatureRefused) else f"decode error: {exc.reason}"
            self.log.error("message %s rejected to the dead-letter queue: %s", delivery.id, reason)
            _safe(self.broker.dead_letter, delivery, reason)
            return None
        return TaskContext(env, delivery, self.booster, self.worker_id)

    def run_one(self, delivery: Delivery) -> None:
        ctx = self._begin(delivery)
        if ctx is None:
            return
        token = _current.set(ctx)
        tid = current_task_id.set(ctx.envelope.id)
        key = id(ctx)
        self.in_flight[key] = ctx
        try:
            for b in self.befores:
                b(ctx)
            if self._decode_args is not None:
                self._rebuild_args(ctx)
            ctx.result = self.invoke(ctx)
            if self._encode_result is not None:
                ctx.result = self._encode_result(ctx.result)
            ctx.status = _SUCCESS
        except BaseException as exc:  # noqa: BLE001 - every outcome is decided below
            self._failed(ctx, exc)
        finally:
            self._finish(ctx)
            del self.in_flight[key]
            current_task_id.reset(tid)
            _current.reset(token)

    async def run_one_async(self, delivery: Delivery) -> None:
        ctx = self._begin(delivery)
        if ctx is None:
            return
        token = _current.set(ctx)
        tid = current_task_id.set(ctx.envelope.id)
        key = id(ctx)
        self.in_flight[key] = ctx
        try:
            for b in self.befores:
                b(ctx)
            if self._decode_args is not None:
                self._rebuild_args(ctx)
            ctx.result = await self.ainvoke(ctx)
            if self._encode_result is not None:
                ctx.result = self._encode_result(ctx.result)
            ctx.status = _SUCCESS
        except BaseException as exc:  # noqa: BLE001
            self._failed(ctx, exc)
        finally:
            self._finish(ctx)
            del self.in_flight[key]
            current_task_id.reset(tid)
            _current.reset(token)

    def _rebuild_args(self, ctx: TaskContext) -> None:
        e = ctx.envelope
        assert self._decode_args is not None
        try:
            self._decode_args(e.args, e.kwargs)
        except ValueError as exc:
            raise DeadLetter(str(exc)) from None

    def _failed(self, ctx: TaskContext, exc: BaseException) -> None:
        ctx.exception = exc
        if isinstance(exc, Skip):
            ctx.status = outcome_of(exc.status)
        elif isinstance(exc, Requeue):
            ctx.status = _REQUEUED
        elif isinstance(exc, Retry):
            ctx.status = _RETRY
            if not self.retry_owned and ctx.envelope.attempt >= DEFAULT_RETRY_LIMIT:
                ctx.status = _DEAD
                ctx.state["dead_reason"] = (
                    f"Retry raised on {ctx.envelope.attempt + 1} attempts; without the retry control a task is "
                    f"retried at most {DEFAULT_RETRY_LIMIT} times. To allow more, set "
                    f"@boost({self.booster.queue!r}, max_retries=N) (the boostkernel-retry control) or "
                    "BOOSTKERNEL_RETRY_LIMIT")
        elif isinstance(exc, DeadLetter):
            ctx.status = _DEAD
        elif isinstance(exc, TypeError) and not self._fits_signature(ctx.envelope):
            ctx.status = _DEAD
            ctx.state["dead_reason"] = f"arguments do not fit {self.booster.fn.__name__}" \
                                       f"{self.booster.signature}: {str(exc).rsplit('.', 1)[-1]}"
        else:
            ctx.status = _FAILURE
            ctx.state["traceback"] = traceback.format_exc()
            self.log.error("task %s failed: %s: %s", ctx.envelope.id, type(exc).__name__, exc,
                           exc_info=self.log.isEnabledFor(logging.DEBUG))

    def _fits_signature(self, env: Envelope) -> bool:
        try:
            if self.booster.method_kind == "class":
                self.booster.signature.bind(None, *env.args, **env.kwargs)
            else:
                self.booster.signature.bind(*env.args, **env.kwargs)
            return True
        except TypeError:
            return False

    def _finish(self, ctx: TaskContext) -> None:
        ctx.finished_at = time.time()
        status = ctx.status
        broker, delivery = self.broker, ctx.delivery
        assert delivery is not None
        if status is _FAILURE:  # retries (if any) are done: keep the message, with its reason
            exc = ctx.exception
            ctx.state.setdefault("dead_reason", f"failed after {ctx.envelope.attempt + 1} attempt(s): "
                                                 f"{type(exc).__name__}: {exc}")
        for a in self.afters:
            try:
                a(ctx)
            except Exception:  # noqa: BLE001
                self.log.exception("after-hook failed for task %s", ctx.envelope.id)
        if ctx.status is not status and ctx.status is _REQUEUED:
            # an after hook could not finish work that must happen before the ack (a workflow's next step):
            # the message goes back to the queue and runs again
            status = _REQUEUED
        try:
            if status in _ACKED:
                broker.ack(delivery)
            elif status is _RETRY:
                # A retry counts an attempt: publish a copy with attempt+1 (and its eta), then ack the original.
                # (A broker without native delay runs it again at once.)
                delay = float(getattr(ctx.exception, "delay", 0.0) or 0.0)
                env = ctx.envelope
                env.attempt += 1
                if delay > 0:
                    env.options["eta"] = time.time() + delay
                else:
                    env.options.pop("eta", None)
                # The copy gets its own broker message id (the task id in the body is unchanged): brokers
                # that key in-flight records by message id must not confuse it with the original's ack.
                broker.publish(Outgoing(f"{env.id}~{env.attempt}", self.booster.encode(env), env.priority,
                                        env.eta))
                broker.ack(delivery)
            elif status is _REQUEUED:
                exc = ctx.exception
                delay = float(getattr(exc, "delay", 0.0) or 0.0)
                broker.nack(delivery, True, delay)
            else:  # dead, failure
                reason = ctx.state.get("dead_reason") or getattr(ctx.exception, "reason", None) or status.value
                if status is _DEAD:
                    self.log.error("task %s dead-lettered: %s", ctx.envelope.id, reason)
                broker.dead_letter(delivery, str(reason))
        except Exception:  # noqa: BLE001 - a failed ack means a redelivery, never a crash
            self.log.exception("could not settle message %s (it will be redelivered)", delivery.id)
        self.processed += 1


def _wrap(c: Control, inner: Callable[[TaskContext], Any]) -> Callable[[TaskContext], Any]:
    around = c.around
    return lambda ctx: around(ctx, lambda: inner(ctx))


def _awrap(c: Control, inner: Callable[[TaskContext], Awaitable[Any]]) -> Callable[[TaskContext], Awaitable[Any]]:
    around = c.around_async
    return lambda ctx: around(ctx, lambda: inner(ctx))


class SignatureRefused(MessageDecodeError):
    """A message refused by the signature check (``reason``: "unsigned message" or "bad signature")."""


def _verifying_decode(signer: Signer) -> Callable[[bytes | str, str], Envelope]:
    def verified(body: bytes | str, queue: str) -> Envelope:
        try:
            data = open_envelope(signer, body)
        except ValueError as exc:
            raise SignatureRefused(str(exc)) from None
        return decode(data, queue)

    return verified


def _safe(fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # noqa: BLE001
        logging.getLogger("boostkernel").exception("%s failed", getattr(fn, "__name__", fn))


def start_consumer(booster: Booster[Any, Any]) -> Consumer:
    check_can_start(booster)  # an exclusive mode (gevent/eventlet) cannot share the process with another
    consumer = Consumer(booster)
    consumer.start()
    add_consumer(consumer)
    install_signal_handlers()
    return consumer
