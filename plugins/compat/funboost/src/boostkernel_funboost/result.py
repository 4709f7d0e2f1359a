"""The reference system's RPC result object on top of boostkernel's :class:`~boostkernel.AsyncResult`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from boostkernel import AsyncResult as KernelAsyncResult
from boostkernel import ResultTimeout


class HasNotAsyncResult(Exception):  # noqa: N818 - the reference system's name
    """The task's result did not arrive within the timeout."""


class AsyncResult:
    """``push()``/``publish()`` return this: ``.result`` / ``.get()`` wait for the function's return value,
    ``.status_and_result`` gives the whole record, ``.task_id`` identifies the message.

    The booster needs ``is_using_rpc_mode=True`` (``results=True`` here); without it, waiting raises
    :class:`boostkernel.ResultsNotEnabled` naming the fix instead of returning ``None``."""

    def __init__(self, inner: KernelAsyncResult[Any], timeout: float = 1800) -> None:
        self.inner = inner
        self.task_id = inner.task_id
        self.timeout = timeout
        self._status: dict[str, Any] | None = None

    def set_timeout(self, timeout: float = 1800) -> AsyncResult:
        self.timeout = timeout
        return self

    def is_pending(self) -> bool:
        return not self.inner.ready()

    @property
    def status_and_result(self) -> dict[str, Any] | None:
        """The task's record in the reference system's shape (``success``, ``result``, ``exception`` …),
        waiting up to ``timeout`` seconds; ``None`` if nothing arrived."""
        if self._status is None:
            rec = self.inner.record(timeout=self.timeout)
            if rec is None or not self.inner.ready():
                return None
            err = rec.get("error") or {}
            ok = rec.get("status") in ("success", "duplicate")
            self._status = {
                "task_id": self.task_id, "queue_name": self.inner.booster.queue, "success": ok,
                "result": self.inner.get(timeout=0) if ok else None,
                "exception": f"{err.get('type', '')} {err.get('message', '')}".strip() or None,
                "exception_type": err.get("type"), "exception_msg": err.get("message"),
                "run_status": "finish", "status": rec.get("status"), "run_times": int(rec.get("attempt") or 0) + 1,
                "msg_dict": rec.get("kwargs"), "time_start": rec.get("started_at"),
                "time_end": rec.get("finished_at"),
            }
        return self._status

    def is_success(self) -> bool:
        s = self.status_and_result
        return bool(s and s["success"])

    @property
    def result(self) -> Any:
        """The function's return value (``None`` if it failed or nothing arrived in time)."""
        s = self.status_and_result
        return s["result"] if s else None

    def get(self) -> Any:
        return self.result

    def wait_rpc_data_or_raise(self, raise_exception: bool = True) -> dict[str, Any]:
        """The record; raise if nothing arrived, or (``raise_exception``) if the task failed."""
        s = self.status_and_result
        if s is None:
            raise HasNotAsyncResult(f"no result for task {self.task_id} within {self.timeout}s")
        if raise_exception and not s["success"]:
            self.inner.get(timeout=0)  # raises boostkernel.TaskFailed with the remote type and message
        return s

    def set_callback(self, callback_func: Callable[[dict[str, Any] | None], Any]) -> None:
        """Call ``callback_func(status_and_result)`` in a background thread when the result arrives."""
        threading.Thread(target=lambda: callback_func(self.status_and_result), daemon=True,
                         name=f"funboost-callback-{self.task_id[:8]}").start()

    @classmethod
    def batch_wait_rpc_data_or_raise(cls, results: list[AsyncResult], raise_exception: bool = True
                                     ) -> list[dict[str, Any]]:
        return [r.wait_rpc_data_or_raise(raise_exception) for r in results]

    def __repr__(self) -> str:
        return f"<funboost-compatible AsyncResult {self.task_id}>"


__all__ = ["AsyncResult", "HasNotAsyncResult", "ResultTimeout"]
