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


#: A SIGTERM that arrives within this many seconds of the first signal is the same stop request: a signal
#: sent to a process group reaches the worker twice under a wrapper that forwards it (``uv run``,
#: ``timeout``, a shell), and systemd sends it to the whole group.
REPEAT_SIGTERM_WINDOW = 2.0
#: A second Ctrl-C sooner than this after the first is the terminal's copy forwarded by a wrapper, not a
#: person pressing it again.
REPEAT_SIGINT_WINDOW = 0.25
_first_signal_at = 0.0


def _is_repeat(signum: int, now: float) -> bool:
    """Whether a signal received while already stopping is the same request (not a demand to exit now)."""
    since = now - _first_signal_at
    if signum == signal.SIGINT:  # an explicit second Ctrl-C forces
        return since < REPEAT_SIGINT_WINDOW
    return since < REPEAT_SIGTERM_WINDOW


def _on_signal(signum: int, frame: FrameType | None) -> None:
    global _first_signal_at
    now = time.monotonic()
    if _shutdown.is_set():
        if _is_repeat(signum, now):
            os.write(2, b"boostkernel: repeated stop signal: already stopping gracefully (Ctrl-C again to force)\n")
            return
        for g in all_groups():  # a second, deliberate signal: leave now
            g.kill()
        os.write(2, b"boostkernel: second signal, exiting without waiting\n")
        os._exit(1)
    _first_signal_at = now
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
