"""``boostkernel worker`` (:func:`run_worker`): consume a module's boosters in this process or in N children.

The parts live in their own modules: signal handling and the blocking wait in :mod:`boostkernel.signals`,
importing the user's module in :mod:`boostkernel.loading`, concurrency modes in :mod:`boostkernel.modes`
and the process overlay in :mod:`boostkernel.overlay`. The names below are re-exported for callers of
the former single module.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .loading import boosters_of, import_target
from .modes import check_can_start, check_modes, is_prepared, prepare_concurrency, set_concurrency
from .overlay import CHILD_ENV, ProcessGroup, is_child_process, start_processes
from .plugins import get_plugins
from .signals import SHUTDOWN_GRACE, install_signal_handlers, on_shutdown, wait_for_consumers

__all__ = [
    "run_worker", "Worker", "boosters_of", "import_target", "check_can_start", "check_modes", "prepare_concurrency",
    "set_concurrency", "CHILD_ENV", "PREPARE_ENV", "ProcessGroup", "is_child_process", "start_processes",
    "SHUTDOWN_GRACE", "install_signal_handlers", "wait_for_consumers",
]

log = logging.getLogger("boostkernel.worker")
_import_target = import_target  # the former private name
#: Set by ``boostkernel worker`` when it re-executes itself to prepare a mode before importing the module.
PREPARE_ENV = "BOOSTKERNEL_WORKER_PREPARE"


@dataclass
class Worker:
    """What the ``worker_started`` and ``worker_stopping`` hooks receive: this worker process."""

    pid: int
    boosters: list[Any] = field(default_factory=list)
    """The boosters this process consumes."""
    processes: int = 1
    """Worker processes started (``--processes``); 1 means this process consumes itself."""

    @property
    def queues(self) -> list[str]:
        return [b.queue for b in self.boosters]


# --- ``boostkernel worker`` ------------------------------------------------------------------------------


def run_worker(module: str | None, queues: Sequence[str] | None = None, group: str | None = None,
               processes: int = 1, concurrency: str | None = None, reexec: bool = False,
               cpu_affinity: str | Sequence[int] | None = None) -> int:
    """Consume every selected booster until SIGTERM/SIGINT; return an exit code.

    ``concurrency`` runs every booster with that mode. When a mode needs the process prepared before
    the user's module is imported (gevent/eventlet) and ``processes == 1``, the process is prepared
    first if the mode is known up front (``concurrency`` or ``BOOSTKERNEL_CONCURRENCY``); otherwise, with
    ``reexec`` (the CLI), the worker re-executes itself with the mode prepared first.

    ``cpu_affinity`` (``--cpu-affinity``) replaces every booster's ``cpu_affinity``: this process, or each
    of the ``processes`` children, is pinned to one CPU when consuming starts (:mod:`boostkernel.affinity`).
    """
    if cpu_affinity is not None:
        from .affinity import parse

        parse(cpu_affinity)  # a bad value fails before anything starts
    reexeced = os.environ.pop(PREPARE_ENV, None)  # not inherited by processes the tasks start
    pre = concurrency or reexeced or os.environ.get("BOOSTKERNEL_CONCURRENCY")
    if pre and processes == 1:
        prepare_concurrency(pre)
    boosters = boosters_of(module, queues, group)
    if not boosters:
        log.error("no boosters to run in %s", module)
        return 2
    if concurrency:
        set_concurrency(boosters, concurrency)
    if cpu_affinity is not None:
        for b in boosters:
            b.params.cpu_affinity = cpu_affinity
    exclusive = check_modes(boosters)
    group_: ProcessGroup | None = None
    worker = Worker(os.getpid(), list(boosters), processes)
    hook = get_plugins().pm.hook
    stopping_called: list[bool] = []

    def stopping() -> None:
        if not stopping_called:
            stopping_called.append(True)
            hook.worker_stopping(worker=worker)

    on_shutdown(stopping)
    if processes > 1:
        install_signal_handlers()
        group_ = start_processes([b.queue for b in boosters], processes, module=module, concurrency=concurrency,
                                 prepare=exclusive, cpu_affinity=cpu_affinity)
    else:
        if exclusive and not is_prepared(exclusive):
            if reexec and not reexeced:
                log.info("queue(s) use concurrency=%r: restarting the worker with it prepared first", exclusive)
                _reexec({PREPARE_ENV: exclusive})
            # Otherwise the executor checks the process itself and says what to do.
        install_signal_handlers()
        pin = next((b.params.cpu_affinity for b in boosters if b.params.cpu_affinity is not None), None)
        if pin is not None:  # before any consumer thread starts (a framework's worker does not call consume())
            from .affinity import pin_process

            pin_process(pin, "--cpu-affinity" if cpu_affinity is not None else "cpu_affinity")
        frameworks: dict[Any, list[Any]] = {}
        for b in boosters:
            if b.broker_class.capabilities.needs_own_worker:
                frameworks.setdefault(b.broker_class, []).append(b)
            else:
                b.consume()
        for broker_class, fw_boosters in frameworks.items():
            broker_class.run_worker(fw_boosters)  # a whole framework runs them; returns at once (see Broker)
        log.info("worker %s consuming %s", os.getpid(), ", ".join(b.queue for b in boosters))
    hook.worker_started(worker=worker)
    wait_for_consumers()
    stopping()
    if group_ is not None and group_.failed:
        return 1  # children kept dying at start-up (their error is logged above)
    return 0


def _reexec(env: dict[str, str]) -> None:
    """Replace this process by the same command line with ``env`` added (same pid)."""
    sys.stdout.flush()
    sys.stderr.flush()
    argv = [sys.executable, *getattr(sys, "orig_argv", [sys.executable, *sys.argv])[1:]]
    os.execve(sys.executable, argv, {**os.environ, **env})


