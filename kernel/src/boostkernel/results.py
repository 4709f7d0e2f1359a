"""``AsyncResult``: the handle ``push()`` returns, to wait for a task's result (sync or ``await``)."""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .errors import ConfigError, ResultsNotEnabled, ResultTimeout, TaskFailed

if TYPE_CHECKING:
    from concurrent.futures import Future

    from .booster import Booster

R = TypeVar("R")

#: Statuses after which a task will not run again (a record with one of them is final).
FINAL_STATUSES = frozenset(("success", "failure", "skipped", "dead", "expired", "duplicate", "revoked"))
#: Final statuses that ``get()`` treats as success: a duplicate returns the result of the run it duplicates.
_OK_STATUSES = frozenset(("success", "duplicate"))


class AsyncResult(Generic[R]):
    """The result of one published task. Results are kept only when the booster has ``results=True``.

    ``AsyncResult[R]``: ``get()`` returns the function's return type ``R``."""

    __slots__ = ("task_id", "booster", "_record")

    def __init__(self, task_id: str, booster: Booster[Any, Any]) -> None:
        self.task_id = task_id
        self.booster = booster
        self._record: dict[str, Any] | None = None

    def _check(self) -> None:
        if not self.booster.params.results:
            raise ResultsNotEnabled(
                f"queue {self.booster.queue!r} keeps no results, so there is nothing to wait for. "
                f"Set @boost({self.booster.queue!r}, results=True) to use AsyncResult.get()."
            )

    def record(self, timeout: float = 0.0) -> dict[str, Any] | None:
        """The task's status record (``status``, ``result`` or ``error``, timings, worker) or ``None``."""
        self._check()
        if self._record is None:
            rec = self.booster.store.get_result(self.task_id, timeout)
            if rec is not None and rec.get("status") in FINAL_STATUSES:
                self._record = rec
            return rec
        return self._record

    @property
    def status(self) -> str:
        rec = self.record()
        return rec["status"] if rec else "pending"

    def ready(self) -> bool:
        return self.status in FINAL_STATUSES

    def get(self, timeout: float | None = 30.0, propagate: bool = True) -> R:
        """Wait up to ``timeout`` seconds for the result; raise :class:`TaskFailed` if the task failed."""
        rec = self.record(timeout=1e9 if timeout is None else timeout)
        if rec is None or rec.get("status") not in FINAL_STATUSES:
            raise ResultTimeout(f"no result for task {self.task_id} on queue {self.booster.queue!r} "
                                f"within {timeout}s")
        if rec["status"] in _OK_STATUSES:
            return self.booster.codec.decode_result(rec.get("result"))  # type: ignore[no-any-return]
        if not propagate:
            return rec.get("result")  # type: ignore[return-value]
        err = rec.get("error") or {}
        raise TaskFailed(self.task_id, err.get("type", rec["status"]), err.get("message", ""), err.get("traceback"))

    def revoke(self) -> None:
        """Cancel this task: it never runs if pending, and is stopped if running (``cancellable=True``)."""
        self.booster.revoke(self.task_id)

    def then(self, callback: Callable[[R], Any], on_error: Callable[[BaseException], Any] | None = None,
             timeout: float | None = None) -> Future[Any]:
        """Call ``callback(result)`` in a background thread when the result arrives.

        If the task failed or no result came within ``timeout``, ``on_error(exc)`` is called instead (when
        given). Returns a :class:`concurrent.futures.Future` of the callback's return value (or of the
        exception), so callbacks can be chained or waited for. Checks ``results=True`` at once.
        """
        import threading
        from concurrent.futures import Future

        self._check()
        fut: Future[Any] = Future()

        def run() -> None:
            try:
                value = self.get(timeout)
            except BaseException as exc:  # noqa: BLE001 - handed to on_error / the future
                if on_error is None:
                    fut.set_exception(exc)
                    return
                try:
                    fut.set_result(on_error(exc))
                except BaseException as cb_exc:  # noqa: BLE001
                    fut.set_exception(cb_exc)
                return
            try:
                fut.set_result(callback(value))
            except BaseException as exc:  # noqa: BLE001
                fut.set_exception(exc)

        threading.Thread(target=run, daemon=True, name=f"boostkernel-then-{self.task_id[:8]}").start()
        return fut

    async def aget(self, timeout: float | None = 30.0) -> R:
        import asyncio

        return await asyncio.to_thread(self.get, timeout)

    def __await__(self) -> Generator[Any, None, R]:
        return self.aget().__await__()

    def __repr__(self) -> str:
        return f"<AsyncResult {self.task_id} queue={self.booster.queue!r}>"


def wait_all(results: Sequence[AsyncResult[Any]], timeout: float | None = 30.0,
             return_exceptions: bool = False) -> list[Any]:
    """Wait for several results (one shared ``timeout``); return them in order.

    Raises the first failure (:class:`TaskFailed` / :class:`ResultTimeout`), or with
    ``return_exceptions=True`` puts the exception in that task's place, like ``asyncio.gather``.
    """
    import time

    deadline = None if timeout is None else time.monotonic() + timeout
    out: list[Any] = []
    for r in results:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            out.append(r.get(left))
        except (TaskFailed, ResultTimeout) as exc:
            if not return_exceptions:
                raise
            out.append(exc)
    return out


async def await_all(results: Sequence[AsyncResult[Any]], timeout: float | None = 30.0,
                    return_exceptions: bool = False) -> list[Any]:
    """``await`` form of :func:`wait_all`."""
    import asyncio

    return await asyncio.to_thread(wait_all, results, timeout, return_exceptions)


def rpc_result(booster: Booster[Any, Any], task_id: str, record: dict[str, Any], timeout: float) -> Any:
    """Turn the record a synchronous call returned into the function's result, as ``AsyncResult.get()``."""
    status = record.get("status")
    if status == "no-results":
        raise ResultsNotEnabled(record["error"]["message"])
    if status not in FINAL_STATUSES:
        raise ResultTimeout(f"no result for task {task_id} on queue {booster.queue!r} within {timeout}s")
    if status in _OK_STATUSES:
        return booster.codec.decode_result(record.get("result"))
    err = record.get("error") or {}
    raise TaskFailed(task_id, err.get("type", status), err.get("message", ""), err.get("traceback"))


def sync_call(booster: Booster[Any, Any], args: Sequence[Any], kwargs: dict[str, Any], timeout: float) -> Any:
    """Publish one call on ``booster``'s broker and return the function's result from the answer.

    For brokers whose protocol answers each request (``http``, ``grpc``: a ``call(message, timeout)``
    method returning the task's status record): no store is read on the producer's side. Raises
    :class:`~boostkernel.errors.TaskFailed` if the task failed, :class:`~boostkernel.errors.ResultTimeout`
    if it did not finish within ``timeout`` seconds."""
    broker = booster.broker
    call = getattr(broker, "call", None)
    if call is None:
        raise ConfigError(f"broker {broker.name!r} cannot answer a call synchronously; use push(...).get() "
                          "with results=True")
    m = booster.message(args, kwargs)
    return rpc_result(booster, m.id, call(m, timeout), timeout)


def call(booster: Booster[Any, Any], *args: Any, timeout: float = 30.0, **kwargs: Any) -> Any:
    """Run ``booster(*args, **kwargs)`` on the consumer and return its result in the answer of the broker's
    own request (``http``: one POST, ``grpc``: one unary call), which waits for the task (the consumer's
    booster needs ``results=True``). Raises ``TaskFailed`` if it failed and ``ResultTimeout`` after
    ``timeout`` seconds. The ``http`` and ``grpc`` plugins export it as ``boostkernel_http.call`` and
    ``boostkernel_grpc.call``."""
    return sync_call(booster, args, kwargs, timeout)
