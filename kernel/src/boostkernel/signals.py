"""SIGTERM/SIGINT handling and the blocking wait of a worker process.

Signal handlers do no blocking work (no logging lock, no waiting for a thread to start): under gevent
they run inside the event loop, where blocking raises. ``_thread.start_new_thread`` never waits (and is
a greenlet spawn in a patched process). A first signal stops everything gracefully (in-flight tasks
finish, prefetched messages go back); a second one exits at once.
"""

from __future__ import annotations

import _thread
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from .running import all_groups, running_consumers, stop_all

log = logging.getLogger("boostkernel.worker")
SHUTDOWN_GRACE = float(os.environ.get("BOOSTKERNEL_SHUTDOWN_GRACE", "30"))

_handlers_installed = False
_shutdown = threading.Event()
_on_shutdown: list[Callable[[], None]] = []
#: In a child of the process overlay: the parent's pid (set by :func:`mark_child`).
_child_of: int | None = None


def mark_child(parent: int) -> None:
    """This process is a child of the process overlay started by ``parent`` (it never starts children)."""
    global _child_of
    _child_of = parent


def child_of() -> int | None:
    """The parent's pid in a child of the process overlay, else ``None``."""
    return _child_of


def shutdown_requested() -> bool:
    return _shutdown.is_set()


def wait_shutdown(seconds: float) -> bool:
    """Wait up to ``seconds``; True if a graceful shutdown started."""
    return _shutdown.wait(seconds)


def on_shutdown(callback: Callable[[], None]) -> None:
    """Call ``callback()`` (once, in a background thread) when a graceful shutdown starts."""
    _on_shutdown.append(callback)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _shutdown.is_set():  # second signal: leave now
        for g in all_groups():
            g.kill()
        os.write(2, b"boostkernel: second signal, exiting without waiting\n")
        os._exit(1)
    _shutdown.set()
    _thread.start_new_thread(graceful_stop, (signum,))


def _on_signal_in_child(signum: int, frame: FrameType | None) -> None:
    # The parent forwards SIGTERM and kills us after the grace period, so repeated signals (a terminal's
    # SIGINT plus the forwarded SIGTERM) must not cut the graceful stop short.
    if _shutdown.is_set():
        return
    _shutdown.set()
    _thread.start_new_thread(graceful_stop, (signum,))


def graceful_stop(signum: int | None = None) -> None:
    """Stop every consumer and child process of this process gracefully."""
    _shutdown.set()
    if signum is not None:
        log.info("worker %s: signal %s, stopping gracefully (in-flight tasks finish, prefetched messages go back)",
                 os.getpid(), signum)
    while _on_shutdown:
        callback = _on_shutdown.pop(0)
        try:
            callback()
        except Exception:  # noqa: BLE001 - a failing observer must not stop the shutdown
            log.exception("shutdown callback failed")
    groups = all_groups()
    for g in groups:
        g.terminate()  # SIGTERM: each child stops gracefully too
    stop_all(SHUTDOWN_GRACE)
    for g in groups:
        g.stop(SHUTDOWN_GRACE)


def install_signal_handlers() -> None:
    """SIGTERM/SIGINT stop every consumer (and child) gracefully (only possible from the main thread)."""
    global _handlers_installed
    if _handlers_installed:
        return
    # Not ``current_thread() is main_thread()``: under eventlet's patching that is false even in the main
    # thread. ``signal.signal`` itself refuses (ValueError) outside the main thread.
    try:
        if _child_of is not None:
            signal.signal(signal.SIGTERM, _on_signal_in_child)
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent forwards Ctrl-C as SIGTERM
        else:
            signal.signal(signal.SIGTERM, _on_signal)
            signal.signal(signal.SIGINT, _on_signal)
    except ValueError:
        return
    _handlers_installed = True


def wait_for_consumers(poll: float = 0.2) -> None:
    """Block until every consumer and child process of this process has stopped."""
    while True:
        if not running_consumers() and not any(g.running for g in all_groups()):
            return
        time.sleep(poll)
