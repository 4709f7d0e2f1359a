"""Worker processes: signal handling, blocking waits, the process overlay and ``boostkernel worker``.

The process overlay (``processes=N``, ``multi_process_consume(N)``, ``boostkernel worker M --processes N``)
starts N children with the *spawn* method: each is a fresh interpreter (never a fork of a parent that may
hold threads, locks or sockets), started as ``python -c "...boostkernel.worker._child_entry()"``. The child
first prepares the process for its concurrency mode (gevent/eventlet monkey-patch), *then* imports the
user's module and rebuilds the boosters by queue name from :data:`boostkernel.booster.REGISTRY`.
``multiprocessing``'s spawn cannot do that: it re-imports the parent's ``__main__`` before running any
code of ours, which would be too late to patch. Nothing is pickled: the child receives a JSON spec.

A supervisor thread restarts children that die (with a back-off, and gives up on a crash loop); SIGTERM
or SIGINT on the parent is forwarded to every child as SIGTERM so each stops gracefully (in-flight tasks
finish, prefetched messages go back); children that do not stop within the grace period are killed.
Children write their logs to the parent's stderr, each line tagged with the child's pid.
"""

from __future__ import annotations

import _thread
import importlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from types import FrameType, ModuleType
from typing import Any

log = logging.getLogger("boostkernel.worker")
_handlers_installed = False
_shutdown = threading.Event()
_groups: list[ProcessGroup] = []
_groups_lock = threading.Lock()
_prepared: set[str] = set()
#: In a child of the process overlay: the parent's pid (the env variable is removed so that processes the
#: user's tasks start do not inherit it).
_child_of: int | None = None
SHUTDOWN_GRACE = float(os.environ.get("BOOSTKERNEL_SHUTDOWN_GRACE", "30"))
#: Set in every child of the process overlay (a child never starts children of its own).
CHILD_ENV = "BOOSTKERNEL_WORKER_CHILD"
#: Set by ``boostkernel worker`` when it re-executes itself to prepare a mode before importing the module.
PREPARE_ENV = "BOOSTKERNEL_WORKER_PREPARE"


# --- signals and waiting --------------------------------------------------------------------------


# Signal handlers do no blocking work (no logging lock, no waiting for a thread to start): under gevent
# they run inside the event loop, where blocking raises. ``_thread.start_new_thread`` never waits (and is
# a greenlet spawn in a patched process).


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _shutdown.is_set():  # second signal: leave now
        for g in _all_groups():
            g.kill()
        os.write(2, b"boostkernel: second signal, exiting without waiting\n")
        os._exit(1)
    _shutdown.set()
    _thread.start_new_thread(_graceful_stop, (signum,))


def _on_signal_in_child(signum: int, frame: FrameType | None) -> None:
    # The parent forwards SIGTERM and kills us after the grace period, so repeated signals (a terminal's
    # SIGINT plus the forwarded SIGTERM) must not cut the graceful stop short.
    if _shutdown.is_set():
        return
    _shutdown.set()
    _thread.start_new_thread(_graceful_stop, (signum,))


def _graceful_stop(signum: int | None = None) -> None:
    from .consumer import stop_all

    if signum is not None:
        log.info("worker %s: signal %s, stopping gracefully (in-flight tasks finish, prefetched messages go back)",
                 os.getpid(), signum)

    groups = _all_groups()
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
    from .consumer import running_consumers

    if _shutdown.is_set() or not (running_consumers() or any(g.running for g in _all_groups())):
        return
    _shutdown.set()
    log.info("main thread finished: stopping consumers (running tasks get %.0fs to finish, prefetched "
             "messages go back to the queue; call booster.wait() or use `boostkernel worker` to keep "
             "consuming)", SHUTDOWN_GRACE)
    _graceful_stop()


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


def _all_groups() -> list[ProcessGroup]:
    with _groups_lock:
        return list(_groups)


def wait_for_consumers(poll: float = 0.2) -> None:
    """Block until every consumer and child process of this process has stopped."""
    from .consumer import running_consumers

    while True:
        if not running_consumers() and not any(g.running for g in _all_groups()):
            return
        time.sleep(poll)


# --- importing the user's module --------------------------------------------------------------------


def _import_target(module: str, run_name: str | None = None) -> ModuleType:
    """Import a module by name, or a ``.py`` file by path (the worker CLI's argument)."""
    if module.endswith(".py") or os.sep in module:
        import runpy

        path = os.path.abspath(module)
        if os.path.dirname(path) not in sys.path:
            sys.path.insert(0, os.path.dirname(path))
        name = run_name or os.path.splitext(os.path.basename(path))[0]
        mod = ModuleType(name)
        mod.__file__ = path
        sys.modules.setdefault(name, mod)
        mod.__dict__.update(runpy.run_path(path, run_name=name))
        return sys.modules[name]
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return importlib.import_module(module)


def boosters_of(module: str | None, queues: Sequence[str] | None = None, group: str | None = None) -> list[Any]:
    """The boosters a worker should run: those defined by ``module`` (or all), filtered by queues/group."""
    from .booster import REGISTRY

    mod_name = None
    if module is not None:
        mod = _import_target(module)
        mod_name = mod.__name__
    chosen = []
    for b in REGISTRY.values():
        if queues:
            if b.queue not in queues:
                continue
        elif mod_name is not None and b.fn.__module__ != mod_name:
            continue
        if group is not None and b.params.group != group:
            continue
        chosen.append(b)
    if queues:
        missing = set(queues) - {b.queue for b in chosen}
        if missing:
            from .errors import ConfigError

            raise ConfigError(f"no booster for queue(s) {sorted(missing)} in {module or 'this process'}")
    return chosen


# --- concurrency modes: preparing a process, overriding, mixing ---------------------------------------


def prepare_concurrency(name: str) -> None:
    """Prepare this process for concurrency ``name`` (gevent/eventlet: monkey-patch) before user imports."""
    if name in _prepared:
        return
    from .plugins import get_plugins

    cls = get_plugins().get("executor", name).load()
    cls.prepare_process()
    _prepared.add(name)


def _executor_class(booster: Any) -> Any:
    return getattr(booster, "executor_class", None)


def _exclusive(booster: Any) -> bool:
    cls = _executor_class(booster)
    return bool(cls is not None and cls.capabilities.exclusive)


def set_concurrency(boosters: Iterable[Any], name: str) -> None:
    """Run ``boosters`` with concurrency ``name`` instead of their own (``boostkernel worker --concurrency``)."""
    from .errors import ConfigError
    from .plugins import get_plugins

    cls = get_plugins().get("executor", name).load()
    for b in boosters:
        if b.broker_class.capabilities.needs_own_worker:
            continue
        if b.is_async and not cls.capabilities.async_functions:
            raise ConfigError(f"{b.fn.__qualname__} (queue {b.queue!r}) is an async function and "
                              f"--concurrency {name} runs only plain functions; use asyncio")
        b.params.concurrency = name
        b.executor_class = cls


def check_modes(boosters: Iterable[Any]) -> str | None:
    """Refuse a mix of modes in one process when one of them is exclusive; return the exclusive mode."""
    from .errors import ConfigError

    by_mode: dict[str, list[str]] = {}
    exclusive: set[str] = set()
    for b in boosters:
        if _executor_class(b) is None or b.broker_class.capabilities.needs_own_worker:
            continue
        by_mode.setdefault(b.params.concurrency, []).append(b.queue)
        if _exclusive(b):
            exclusive.add(b.params.concurrency)
    if exclusive and len(by_mode) > 1:
        listing = "; ".join(f"{m}: {', '.join(sorted(qs))}" for m, qs in sorted(by_mode.items()))
        raise ConfigError(
            f"concurrency {'/'.join(sorted(exclusive))} monkey-patches the whole process and cannot share it "
            f"with other modes ({listing}). Run each mode in its own worker, e.g. "
            + " and ".join(f"`boostkernel worker MODULE -q {' -q '.join(sorted(qs))}`" for qs in by_mode.values())
            + ", or run them all in one mode with `--concurrency NAME`."
        )
    return next(iter(exclusive), None)


def check_can_start(booster: Any) -> None:
    """Called before a consumer starts: an exclusive mode cannot share the process with another mode."""
    from .consumer import running_consumers

    others = [c.booster for c in running_consumers() if c.booster is not booster]
    check_modes([*others, booster])


# --- ``boostkernel worker`` ------------------------------------------------------------------------------


def run_worker(module: str | None, queues: Sequence[str] | None = None, group: str | None = None,
               processes: int = 1, concurrency: str | None = None, reexec: bool = False) -> int:
    """Consume every selected booster until SIGTERM/SIGINT; return an exit code.

    ``concurrency`` runs every booster with that mode. When a mode needs the process prepared before
    the user's module is imported (gevent/eventlet) and ``processes == 1``, the process is prepared
    first if the mode is known up front (``concurrency`` or ``BOOSTKERNEL_CONCURRENCY``); otherwise, with
    ``reexec`` (the CLI), the worker re-executes itself with the mode prepared first.
    """
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
    exclusive = check_modes(boosters)
    group_: ProcessGroup | None = None
    if processes > 1:
        install_signal_handlers()
        group_ = start_processes([b.queue for b in boosters], processes, module=module, concurrency=concurrency,
                                 prepare=exclusive)
    else:
        if exclusive and exclusive not in _prepared:
            if reexec and not reexeced:
                log.info("queue(s) use concurrency=%r: restarting the worker with it prepared first", exclusive)
                _reexec({PREPARE_ENV: exclusive})
            # Otherwise the executor checks the process itself and says what to do.
        install_signal_handlers()
        from .plugins import get_plugins

        frameworks: dict[Any, list[Any]] = {}
        for b in boosters:
            if b.broker_class.capabilities.needs_own_worker:
                frameworks.setdefault(b.broker_class, []).append(b)
            else:
                b.consume()
        for broker_class, fw_boosters in frameworks.items():
            broker_class.run_worker(fw_boosters)  # a whole framework runs them; returns at once (see Broker)
        log.info("worker %s consuming %s", os.getpid(), ", ".join(b.queue for b in boosters))
        get_plugins().pm.hook.worker_started(worker=sys.modules[__name__])
    wait_for_consumers()
    if group_ is not None and group_.failed:
        return 1  # children kept dying at start-up (their error is logged above)
    return 0


def _reexec(env: dict[str, str]) -> None:
    """Replace this process by the same command line with ``env`` added (same pid)."""
    sys.stdout.flush()
    sys.stderr.flush()
    argv = [sys.executable, *getattr(sys, "orig_argv", [sys.executable, *sys.argv])[1:]]
    os.execve(sys.executable, argv, {**os.environ, **env})


# --- the process overlay ------------------------------------------------------------------------------


class ProcessGroup:
    """``n`` spawned worker processes consuming the same queues, supervised and restarted when they die."""

    #: A child that dies this soon after starting counts towards a crash loop.
    FAST_DEATH = 3.0
    #: Consecutive fast deaths of one slot after which the group gives up (the error is in the log above).
    MAX_FAST_DEATHS = 3

    def __init__(self, spec: dict[str, Any], n: int) -> None:
        self.spec = spec
        self.n = n
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * n
        self._started_at = [0.0] * n
        self._fast_deaths = [0] * n
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
        env = {**os.environ, CHILD_ENV: str(os.getpid())}
        code = "from boostkernel.worker import _child_entry; _child_entry()"
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
        while not self._stopping.is_set() and not _shutdown.is_set():
            self._stopping.wait(0.3)
            with self._lock:
                if self._stopping.is_set() or _shutdown.is_set():
                    return
                for i, p in enumerate(self.procs):
                    if p is None or p.poll() is None:
                        continue
                    code = p.returncode
                    lived = time.monotonic() - self._started_at[i]
                    self._fast_deaths[i] = self._fast_deaths[i] + 1 if lived < self.FAST_DEATH else 0
                    if self._fast_deaths[i] >= self.MAX_FAST_DEATHS:
                        log.error("worker process slot %d died %d times within %.0fs of starting (last exit %s); "
                                  "not restarting it (see its error above)", i + 1, self._fast_deaths[i],
                                  self.FAST_DEATH, code)
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
        with _groups_lock:
            if self in _groups:
                _groups.remove(self)


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
            from .errors import ConfigError

            raise ConfigError("the process overlay rebuilds boosters by importing their module in each child, but "
                              "these boosters were defined interactively (no file); define them in a module")
        return {"name": None, "path": os.path.abspath(path)}
    return {"name": module, "path": os.path.abspath(path) if path else None}


def _log_level() -> str:
    """The children's log level: the parent's if it configured boostkernel's logging, else INFO."""
    logger = logging.getLogger("boostkernel")
    return logging.getLevelName(logger.getEffectiveLevel()) if logger.handlers else "INFO"


def start_processes(queues: Sequence[str], n: int, module: str | None, concurrency: str | None = None,
                    prepare: str | None = None) -> ProcessGroup:
    """Start ``n`` spawned children consuming ``queues``; a supervisor thread restarts children that die.

    ``module`` defines the boosters (each child imports it); ``prepare`` is the mode to prepare before that
    import (gevent/eventlet); ``concurrency`` overrides every booster's mode.
    """
    from .errors import ConfigError

    if _child_of is not None:
        raise ConfigError(
            "a worker process tried to start worker processes: your module starts consuming when it is imported. "
            "Put the consume()/multi_process_consume() call under `if __name__ == \"__main__\":`"
        )
    from .booster import REGISTRY

    local = [REGISTRY[q] for q in queues if q in REGISTRY and not REGISTRY[q].broker_class.capabilities.cross_process]
    if local:
        raise ConfigError(
            f"queue(s) {', '.join(b.queue for b in local)} use broker {local[0].broker_name!r}, which lives inside one "
            "process: worker processes would each see an empty queue of their own. Use a broker shared by "
            "processes (e.g. broker='sqlite' on one host, or 'redis'), or consume in this process (processes=1)"
        )
    if prepare is None:
        prepare = check_modes([REGISTRY[q] for q in queues if q in REGISTRY])
    spec: dict[str, Any] = {
        "module": _module_ref(module), "queues": list(queues), "prepare": prepare or concurrency,
        "concurrency": concurrency, "sys_path": [p for p in sys.path if p],
        "log_level": _log_level(),
    }
    install_signal_handlers()
    group = ProcessGroup(spec, n)
    with _groups_lock:
        _groups.append(group)
    return group.start()


def is_child_process() -> bool:
    """True in a worker process started by the process overlay (not in the parent that supervises)."""
    return _child_of is not None


def _watch_parent(parent: int) -> None:
    """Stop gracefully if the parent dies (it can no longer forward signals or restart us)."""
    while not _shutdown.is_set():
        if os.getppid() != parent:
            log.warning("worker process %s: parent %s is gone; stopping", os.getpid(), parent)
            if not _shutdown.is_set():
                _shutdown.set()
                _graceful_stop()
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
    global _child_of
    _child_of = int(os.environ.pop(CHILD_ENV))
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
    threading.Thread(target=_watch_parent, args=(_child_of,), name="boostkernel-parent-watch",
                     daemon=True).start()
    ref = spec["module"]
    try:
        if ref["name"]:
            try:
                _import_target(ref["name"])
            except ModuleNotFoundError:
                if not ref["path"]:
                    raise
                _import_target(ref["path"])
        elif ref["path"]:
            _import_target(ref["path"], run_name="__mp_main__")
        from .booster import REGISTRY

        missing = [q for q in spec["queues"] if q not in REGISTRY]
        if missing:
            from .errors import ConfigError

            raise ConfigError(f"worker process: importing {ref['name'] or ref['path']} defined no booster for "
                              f"queue(s) {missing}")
        boosters = [REGISTRY[q] for q in spec["queues"]]
        if spec.get("concurrency"):
            set_concurrency(boosters, spec["concurrency"])
        for b in boosters:
            b.params.processes = 1
            b.consume()
    except Exception:
        log.exception("worker process %s could not start", os.getpid())
        sys.exit(3)
    if _shutdown.is_set():  # SIGTERM came while we were starting: stop what started after it
        _graceful_stop()
        return
    log.info("worker process %s consuming %s", os.getpid(), ", ".join(spec["queues"]))
    wait_for_consumers()
