"""The process overlay: ``processes=N``, ``multi_process_consume(N)``, ``boostkernel worker M --processes N``
starts N children with the *spawn* method: each is a fresh interpreter (never a fork of a parent that may
hold threads, locks or sockets), started as ``python -c "...boostkernel.overlay._child_entry()"``. The child
first prepares the process for its concurrency mode (gevent/eventlet monkey-patch), *then* imports the
user's module and rebuilds the boosters by queue name from :data:`boostkernel.registry.REGISTRY`.
``multiprocessing``'s spawn cannot do that: it re-imports the parent's ``__main__`` before running any
code of ours, which would be too late to patch. Nothing is pickled: the child receives a JSON spec.

A supervisor thread restarts children that die (with a back-off, and gives up on a crash loop); SIGTERM
or SIGINT on the parent is forwarded to every child as SIGTERM so each stops gracefully (in-flight tasks
finish, prefetched messages go back); children that do not stop within the grace period are killed.
Children write their logs to the parent's stderr, each line tagged with the child's pid.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

from .affinity import SLOT_ENV
from .errors import ConfigError
from .loading import import_target
from .modes import check_modes, prepare_concurrency, set_concurrency
from .registry import REGISTRY
from .running import add_group, remove_group
from .signals import (
    SHUTDOWN_GRACE,
    child_of,
    graceful_stop,
    install_signal_handlers,
    mark_child,
    shutdown_requested,
    wait_for_consumers,
)

log = logging.getLogger("boostkernel.worker")
#: Set in every child of the process overlay (a child never starts children of its own).
CHILD_ENV = "BOOSTKERNEL_WORKER_CHILD"
#: A directory where each child leaves a file named after its pid once its consumers have started.
READY_ENV = "BOOSTKERNEL_WORKER_READY_DIR"


# --- the process overlay ------------------------------------------------------------------------------


class ProcessGroup:
    """``n`` spawned worker processes consuming the same queues, supervised and restarted when they die."""

    #: A child that dies before its consumers started, or this soon after, counts towards a crash loop
    #: (start-up itself may take longer than this on a loaded machine: readiness is what is checked).
    FAST_DEATH = 3.0
    #: Consecutive fast deaths of one slot after which the group gives up (the error is in the log above).
    MAX_FAST_DEATHS = 3

    def __init__(self, spec: dict[str, Any], n: int) -> None:
        self.spec = spec
        self.n = n
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * n
        self._started_at = [0.0] * n
        self._fast_deaths = [0] * n
        self._ready_dir = tempfile.mkdtemp(prefix="boostkernel-ready-")
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.restarts = 0
        self.failed = False
        self._supervising = False

    # --- starting and supervising ---
    def start(self) -> ProcessGroup:
        with self._lock:
            for i in range(self.n):
                self._spawn(i)
        self._supervising = True
        threading.Thread(target=self._supervise, name="boostkernel-supervisor", daemon=True).start()
        return self

    def _spawn(self, slot: int) -> None:
        env = {**os.environ, CHILD_ENV: str(os.getpid()), READY_ENV: self._ready_dir, SLOT_ENV: str(slot)}
        code = "from boostkernel.overlay import _child_entry; _child_entry()"
        p = subprocess.Popen([sys.executable, "-c", code, json.dumps(self.spec)], env=env)
        self.procs[slot] = p
        self._started_at[slot] = time.monotonic()
        log.info("started worker process %s (%d/%d) for %s", p.pid, slot + 1, self.n, ", ".join(self.spec["queues"]))

    def _supervise(self) -> None:
        try:
            self._supervise_loop()
        finally:
            self._supervising = False

    def _supervise_loop(self) -> None:
        while not self._stopping.is_set() and not shutdown_requested():
            self._stopping.wait(0.3)
            with self._lock:
                if self._stopping.is_set() or shutdown_requested():
                    return
                for i, p in enumerate(self.procs):
                    if p is None or p.poll() is None:
                        continue
                    code = p.returncode
                    lived = time.monotonic() - self._started_at[i]
                    marker = os.path.join(self._ready_dir, str(p.pid))
                    started = os.path.exists(marker)
                    if started:
                        os.unlink(marker)
                    fast = not started or lived < self.FAST_DEATH
                    self._fast_deaths[i] = self._fast_deaths[i] + 1 if fast else 0
                    if self._fast_deaths[i] >= self.MAX_FAST_DEATHS:
                        log.error("worker process slot %d died %d times before or within %.0fs of starting its "
                                  "consumers (last exit %s); not restarting it (see its error above)", i + 1,
                                  self._fast_deaths[i], self.FAST_DEATH, code)
                        self.procs[i] = None
                        self.failed = True
                        continue
                    what = f"signal {-code}" if code < 0 else f"exit {code}"
                    log.warning("worker process %s died (%s); restarting it", p.pid, what)
                    self.restarts += 1
                    self._spawn(i)
                if all(p is None for p in self.procs):
                    log.error("every worker process of %s failed; giving up", ", ".join(self.spec["queues"]))
                    return

    # --- state ---
    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p is not None and p.poll() is None]

    @property
    def running(self) -> bool:
        """True while a child is alive or the supervisor may still restart one."""
        return self._supervising or any(p is not None and p.poll() is None for p in self.procs)

    # --- stopping ---
    def terminate(self) -> None:
        """Ask every child to stop gracefully (SIGTERM); no restarts from now on."""
        self._stopping.set()
        with self._lock:
            for p in self.procs:
                if p is not None and p.poll() is None:
                    p.terminate()

    def kill(self) -> None:
        self._stopping.set()
        for p in self.procs:
            if p is not None and p.poll() is None:
                p.kill()

    def stop(self, timeout: float = SHUTDOWN_GRACE) -> None:
        """Stop gracefully: SIGTERM, wait up to ``timeout`` s (plus 5 s), then SIGKILL the rest."""
        self.terminate()
        deadline = time.monotonic() + timeout + 5
        for p in self.procs:
            if p is None:
                continue
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker process %s did not stop within %.0fs; killing it", p.pid, timeout)
                p.kill()
                p.wait(5)
        shutil.rmtree(self._ready_dir, ignore_errors=True)
        remove_group(self)


def _module_ref(module: str | None) -> dict[str, str | None]:
    """How a child finds ``module``: its name, and its file as a fallback (``__main__``, pytest modules …)."""
    if module is None:
        return {"name": None, "path": None}
    if module.endswith(".py") or os.sep in module:
        return {"name": None, "path": os.path.abspath(module)}
    mod = sys.modules.get(module)
    path = getattr(mod, "__file__", None)
    if module in ("__main__", "__mp_main__"):
        if path is None:
            raise ConfigError("the process overlay rebuilds boosters by importing their module in each child, but "
                              "these boosters were defined interactively (no file); define them in a module")
        return {"name": None, "path": os.path.abspath(path)}
    return {"name": module, "path": os.path.abspath(path) if path else None}


def _log_level() -> str:
    """The children's log level: the parent's if it configured boostkernel's logging, else INFO."""
    logger = logging.getLogger("boostkernel")
    return logging.getLevelName(logger.getEffectiveLevel()) if logger.handlers else "INFO"


def start_processes(queues: Sequence[str], n: int, module: str | None, concurrency: str | None = None,
                    prepare: str | None = None, cpu_affinity: str | Sequence[int] | None = None) -> ProcessGroup:
    """Start ``n`` spawned children consuming ``queues``; a supervisor thread restarts children that die.

    ``module`` defines the boosters (each child imports it); ``prepare`` is the mode to prepare before that
    import (gevent/eventlet); ``concurrency`` overrides every booster's mode; ``cpu_affinity`` every
    booster's ``cpu_affinity`` (child i is pinned to the i-th CPU of the set, see :mod:`boostkernel.affinity`).
    """
    if child_of() is not None:
        raise ConfigError(
            "a worker process tried to start worker processes: your module starts consuming when it is imported. "
            "Put the consume()/multi_process_consume() call under `if __name__ == \"__main__\":`"
        )
    local = [REGISTRY[q] for q in queues if q in REGISTRY and not REGISTRY[q].broker_class.capabilities.cross_process]
    if local:
        raise ConfigError(
            f"queue(s) {', '.join(b.queue for b in local)} use broker {local[0].broker_name!r}, which lives inside one "
            "process: worker processes would each see an empty queue of their own. Use a broker shared by "
            "processes (e.g. broker='sqlite' on one host, or 'redis'), or consume in this process (processes=1)"
        )
    if prepare is None:
        prepare = check_modes([REGISTRY[q] for q in queues if q in REGISTRY])
    affinity = cpu_affinity
    if affinity is None:
        affinity = next((REGISTRY[q].params.cpu_affinity for q in queues
                         if q in REGISTRY and REGISTRY[q].params.cpu_affinity is not None), None)
    if affinity is not None:
        _check_spread(affinity, n)
    spec: dict[str, Any] = {
        "module": _module_ref(module), "queues": list(queues), "prepare": prepare or concurrency,
        "concurrency": concurrency, "sys_path": [p for p in sys.path if p],
        "log_level": _log_level(),
        "cpu_affinity": list(cpu_affinity) if isinstance(cpu_affinity, (list, tuple)) else cpu_affinity,
    }
    install_signal_handlers()
    group = ProcessGroup(spec, n)
    add_group(group)
    return group.start()


def _check_spread(value: str | Sequence[int], n: int) -> None:
    """Say so when ``n`` pinned children must share CPUs (allowed, but each shares its CPU's time)."""
    from .affinity import ONE, allowed_cpus, parse

    setting = parse(value)
    cpus = sorted(allowed_cpus() or ()) if setting == ONE else list(setting)
    if cpus and n > len(cpus):
        log.warning("cpu_affinity=%r: %d worker processes on %d CPU(s) (%s): some share a CPU, each pinned to it",
                    value, n, len(cpus), ",".join(map(str, cpus)))


def is_child_process() -> bool:
    """True in a worker process started by the process overlay (not in the parent that supervises)."""
    return child_of() is not None


def _watch_parent(parent: int) -> None:
    """Stop gracefully if the parent dies (it can no longer forward signals or restart us)."""
    while not shutdown_requested():
        if os.getppid() != parent:
            log.warning("worker process %s: parent %s is gone; stopping", os.getpid(), parent)
            if not shutdown_requested():
                graceful_stop()
            return
        time.sleep(1.0)


class _PidTag(logging.Filter):
    """Prefixes each record of a child with ``[pid N]`` so interleaved child logs stay readable."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "_bk_pid_tagged", False):
            record.msg, record.args = f"[pid {record.process}] {record.getMessage()}", None
            record._bk_pid_tagged = True
        return True


def _child_entry() -> None:
    """Entry point of a spawned child: prepare the mode, import the boosters' module, consume until SIGTERM."""
    parent = int(os.environ.pop(CHILD_ENV))
    ready_dir = os.environ.pop(READY_ENV, None)
    slot = os.environ.pop(SLOT_ENV, None)
    mark_child(parent)
    spec = json.loads(sys.argv[1])
    sys.argv = sys.argv[:1]
    if spec.get("prepare"):
        prepare_concurrency(spec["prepare"])  # before the user's module is imported
    for p in reversed(spec["sys_path"]):
        if p not in sys.path:
            sys.path.insert(0, p)
    from .logs import setup_logging

    setup_logging(os.environ.get("BOOSTKERNEL_LOG_LEVEL") or spec.get("log_level") or "INFO")
    for h in logging.getLogger("boostkernel").handlers:  # tag every line of this child with its pid
        h.addFilter(_PidTag())
    install_signal_handlers()
    threading.Thread(target=_watch_parent, args=(parent,), name="boostkernel-parent-watch",
                     daemon=True).start()
    ref = spec["module"]
    try:
        if ref["name"]:
            try:
                import_target(ref["name"])
            except ModuleNotFoundError:
                if not ref["path"]:
                    raise
                import_target(ref["path"])
        elif ref["path"]:
            import_target(ref["path"], run_name="__mp_main__")
        missing = [q for q in spec["queues"] if q not in REGISTRY]
        if missing:
            raise ConfigError(f"worker process: importing {ref['name'] or ref['path']} defined no booster for "
                              f"queue(s) {missing}")
        boosters = [REGISTRY[q] for q in spec["queues"]]
        if spec.get("concurrency"):
            set_concurrency(boosters, spec["concurrency"])
        if slot is not None:
            from .affinity import set_slot

            set_slot(int(slot))  # consume() pins this child to the slot-th CPU when cpu_affinity is set
        for b in boosters:
            b.params.processes = 1
            if spec.get("cpu_affinity") is not None:
                b.params.cpu_affinity = spec["cpu_affinity"]
            b.consume()
    except Exception:
        log.exception("worker process %s could not start", os.getpid())
        sys.exit(3)
    if shutdown_requested():  # SIGTERM came while we were starting: stop what started after it
        graceful_stop()
        return
    log.info("worker process %s consuming %s", os.getpid(), ", ".join(spec["queues"]))
    if ready_dir:
        try:
            open(os.path.join(ready_dir, str(os.getpid())), "w").close()  # noqa: SIM115 - an empty marker
        except OSError:
            pass  # the group is gone (stopping): nothing will look
    wait_for_consumers()
