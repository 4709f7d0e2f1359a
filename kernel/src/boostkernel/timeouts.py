"""Stopping a running task from another thread: shared by the concurrency plugins whose tasks run in OS threads.

CPython can only ask a thread to raise an exception at its next bytecode (``PyThreadState_SetAsyncExc``);
a blocking C call (``time.sleep`` in C, a socket read) finishes first. Both helpers here say so plainly
rather than pretend otherwise.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .errors import TaskTimeout


def raise_in_thread(thread: threading.Thread, exc_type: type[BaseException]) -> bool:
    """Ask ``thread`` to raise ``exc_type`` at its next bytecode; ``False`` if it has not started."""
    if thread.ident is None:
        return False
    import ctypes

    n = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(exc_type))
    return bool(n == 1)


def call_with_timeout(fn: Callable[[], Any], timeout: float) -> Any:
    """Run ``fn`` in a helper thread and return its result (or raise its exception).

    After ``timeout`` seconds the caller gets :class:`~boostkernel.errors.TaskTimeout` and the helper thread
    is asked to raise ``TaskTimeout`` too, so the abandoned call stops at its next bytecode.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True, name="boostkernel-timeout")
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise_in_thread(t, TaskTimeout)
        raise TaskTimeout(f"task exceeded its {timeout}s timeout and was stopped")
    if "error" in box:
        raise box["error"]
    return box.get("result")
