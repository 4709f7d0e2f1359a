"""SIGTERM/SIGINT handling and the blocking wait of a worker process.

Signal handlers do no blocking work and take no lock (no logging, no ``Event.set``, no waiting for a
thread to start): a Python handler runs in the main thread between two bytecodes, possibly in the middle
of code that holds a lock, including another run of the same handler. A second SIGTERM that arrived
while the first handler was inside ``Event.set()`` used to call ``Event.set()`` again and wait forever for
the lock its own interrupted frame held (a worker child that never stopped). So a handler only reads and
writes plain module flags and hands the work to a new thread: ``_thread.start_new_thread`` never waits (and
is a greenlet spawn in a patched process; under gevent handlers run inside the event loop, where blocking
raises). A first signal stops everything gracefully (in-flight tasks finish, prefetched messages go back);
a second one exits at once.
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
#: Set by the signal handlers themselves (a plain flag: a handler must not take the lock of ``_shutdown``).
_signalled = False
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
    return _signalled or _shutdown.is_set()


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
    global _first_signal_at, _signalled
    now = time.monotonic()
    if _signalled or _shutdown.is_set():
        if _is_repeat(signum, now):
            os.write(2, b"boostkernel: repeated stop signal: already stopping gracefully (Ctrl-C again to force)\n")
            return
        os.write(2, b"boostkernel: second signal, exiting without waiting\n")
        _thread.start_new_thread(_exit_now, ())
        return
    _first_signal_at = now
    _signalled = True
    _thread.start_new_thread(graceful_stop, (signum,))


def _exit_now() -> None:
    """A second, deliberate signal: kill the children and leave (in a thread: ``all_groups`` takes a lock)."""
    try:
        for g in all_groups():
            g.kill()
    finally:
        os._exit(1)


def _on_signal_in_child(signum: int, frame: FrameType | None) -> None:
    # The parent forwards SIGTERM (and sends it again when it waits for us), and kills us after the grace
    # period, so repeated signals (a terminal's SIGINT plus the forwarded SIGTERM) must not cut the graceful
    # stop short.
    global _signalled
    if _signalled or _shutdown.is_set():
        return
    _signalled = True
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


_exit_hook_installed = False


def _at_main_thread_exit() -> None:
    """The main thread has finished (its script ended, or it raised): stop what ``consume()`` started, so the
    process ends. In-flight tasks finish (at most ``BOOSTKERNEL_SHUTDOWN_GRACE`` s), prefetched messages go back
    to the queue; a task still running after the grace period is redelivered later (acks follow execution)."""
    if _shutdown.is_set() or not (running_consumers() or any(g.running for g in all_groups())):
        return
    _shutdown.set()
    log.info("main thread finished: stopping consumers (running tasks get %.0fs to finish, prefetched "
             "messages go back to the queue; call booster.wait() or use `boostkernel worker` to keep "
             "consuming)", SHUTDOWN_GRACE)
    graceful_stop()


def install_exit_hook() -> None:
    """Stop every consumer of this process when its main thread ends (see :func:`_at_main_thread_exit`)."""
    global _exit_hook_installed
    if _exit_hook_installed:
        return
    _exit_hook_installed = True
    # Runs when the main thread ends, before the interpreter joins non-daemon threads and while new threads
    # may still start (concurrent.futures uses the same hook); plain atexit runs too late for that.
    register = getattr(threading, "_register_atexit", None)
    try:
        if register is not None:
            register(_at_main_thread_exit)
        else:  # pragma: no cover - every supported CPython has it
            import atexit

            atexit.register(_at_main_thread_exit)
    except RuntimeError:  # already shutting down: nothing left to hook
        pass


def install_signal_handlers() -> None:
    """SIGTERM/SIGINT stop every consumer (and child) gracefully (only possible from the main thread)."""
    global _handlers_installed
    install_exit_hook()
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
