"""``cpu_affinity``: keep each consuming process on one CPU (docs/concurrency.md#cpu-affinity).

Why: a broker client that runs its own network thread (nats-py's event loop, paho-mqtt's loop, the
pulsar and confluent-kafka clients) hands CPython's GIL back and forth with the kernel's threads at every
system call; with two free CPUs each hand-over wakes a thread on the *other* CPU, and that costs more than
a short task (docs/benchmarks.md, NATS JetStream). On one CPU a thread keeps the GIL until it blocks.

Values (checked at decoration by :func:`parse`): ``None`` (the default: affinity untouched), ``"one"``
(one CPU out of the CPUs the process may run on), or CPU ids -- a list/tuple such as ``[0, 1]`` or a
string ``"0,2-3"`` -- to choose that one CPU from. A child of ``processes=N`` with slot ``i`` (0-based)
gets CPU ``cpus[i % len(cpus)]``, so N children spread over the CPUs (and keep their CPU when they are
restarted); a process that consumes itself stays on the CPU it was running on when consuming started
(the first of ``cpus`` if that one is not among them). Every thread of the process is pinned, those
already running included, and threads started later inherit it. Pinning happens once per process, when
consuming starts: nothing is done per message.

Linux only (``os.sched_setaffinity``). Elsewhere the value is still checked at decoration and consuming
logs one warning and goes on unpinned, so the same code runs on a laptop.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Literal

from .errors import ConfigError

log = logging.getLogger("boostkernel.worker")

ONE: Literal["one"] = "one"
#: Set by the process overlay in each child: its slot (0..N-1), which picks its CPU.
SLOT_ENV = "BOOSTKERNEL_WORKER_SLOT"

Parsed = Literal["one"] | tuple[int, ...]

_lock = threading.Lock()
_pinned: tuple[Parsed, int] | None = None  # (setting, CPU) once this process is pinned
_slot: int | None = None
_warned_unsupported = False

_FIX = ('give "one" (each consuming process on one CPU), CPU ids to choose that CPU from ([0, 1], or a '
        'string "0,1" or "0-3"), or None to leave the affinity alone')


def supported() -> bool:
    """Whether this platform can pin a process (Linux: ``os.sched_setaffinity``)."""
    return hasattr(os, "sched_setaffinity") and hasattr(os, "sched_getaffinity")


def allowed_cpus() -> set[int] | None:
    """The CPUs this process may run on (``taskset``/cgroup cpuset included), or None if unknown."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    return set(os.sched_getaffinity(0))


def _fmt(cpus: set[int] | tuple[int, ...]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def _parse_string(text: str, what: str) -> tuple[int, ...]:
    ids: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        try:
            first, last = (int(lo), int(hi)) if sep else (int(part), int(part))
        except ValueError:
            raise ConfigError(f"{what}: {part!r} is not a CPU id or a range such as 0-3; {_FIX}") from None
        if first < 0 or last < first:
            raise ConfigError(f"{what}: {part!r} is not a CPU id or a range such as 0-3; {_FIX}")
        ids.update(range(first, last + 1))
    return tuple(sorted(ids))


def parse(value: object, queue: str | None = None, check_available: bool = True) -> Parsed:
    """``value`` checked and normalised: ``"one"`` or a sorted tuple of CPU ids (raises ConfigError with
    the fix). With ``check_available``, CPU ids must be among the CPUs this process may run on, where the
    platform tells (once this process is pinned, that is its one CPU: no longer checked then)."""
    what = f"cpu_affinity={value!r}" + (f" for queue {queue!r}" if queue else "")
    if isinstance(value, str):
        text = value.strip().lower()
        if text == ONE:
            return ONE
        if not text or not (text[0].isdigit()):
            raise ConfigError(f"{what}: {_FIX}")
        cpus = _parse_string(text, what)
    elif isinstance(value, (list, tuple)):
        if not value or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in value):
            raise ConfigError(f"{what}: CPU ids are integers >= 0 and at least one is needed; {_FIX}")
        cpus = tuple(sorted(set(value)))
    else:
        hint = ' (True: write "one")' if value is True else ""
        raise ConfigError(f"{what}{hint}: {_FIX}")
    allowed = allowed_cpus() if check_available and _pinned is None else None
    if allowed is not None and not set(cpus) <= allowed:
        missing = set(cpus) - allowed
        raise ConfigError(f"{what}: CPU {_fmt(missing)} is not available to this process (it may run on "
                          f"{_fmt(allowed)}: os.sched_getaffinity(0), set by taskset or the container's cpuset); "
                          "give ids from that set, or \"one\"")
    return cpus


def set_slot(slot: int | None) -> None:
    """This process is child ``slot`` of the process overlay (the CPU is chosen by slot)."""
    global _slot
    _slot = slot


def _current_cpu() -> int | None:
    """The CPU the calling thread last ran on (``/proc/thread-self/stat``, field 39), or None."""
    try:
        with open("/proc/thread-self/stat") as fh:
            stat = fh.read()
        return int(stat[stat.rindex(")") + 2:].split()[36])
    except (OSError, ValueError, IndexError):
        return None


def choose_cpu(setting: Parsed, slot: int | None) -> int:
    """The one CPU for this process: by ``slot`` in a child, else the current CPU if it is a candidate."""
    candidates = sorted(allowed_cpus() or {0}) if setting == ONE else list(setting)
    if slot is not None:
        return candidates[slot % len(candidates)]
    cur = _current_cpu()
    return cur if cur in candidates else candidates[0]


def _pin_all_threads(cpus: set[int]) -> None:
    """Pin every thread of this process (``/proc/self/task``), not only the calling one: on Linux
    ``sched_setaffinity`` applies to one thread, and threads started later inherit their creator's mask."""
    os.sched_setaffinity(0, cpus)
    done: set[int] = set()
    for _ in range(5):  # a thread started meanwhile by an unpinned one: look again
        try:
            tids = {int(t) for t in os.listdir("/proc/self/task")}
        except OSError:
            return
        todo = tids - done
        if not todo:
            return
        for tid in todo:
            try:
                os.sched_setaffinity(tid, cpus)
            except ProcessLookupError:
                pass  # the thread ended
        done |= todo


def pin_process(value: object, source: str = "cpu_affinity") -> int | None:
    """Pin this whole process to one CPU as ``value`` asks; return the CPU (None: nothing done).

    Called when consuming starts. Once pinned, a process stays so; a later call with another setting
    logs a warning and changes nothing (one process, one CPU)."""
    global _pinned, _warned_unsupported
    if value is None:
        return None
    if not supported():
        if not _warned_unsupported:
            _warned_unsupported = True
            log.warning("%s=%r is ignored: this platform cannot pin a process to a CPU (no os.sched_setaffinity; "
                        "Linux only); consuming unpinned", source, value)
        return None
    setting = parse(value, check_available=False)  # checked at decoration; pinning below says if it cannot
    with _lock:
        if _pinned is not None:
            if _pinned[0] != setting:
                log.warning("%s=%r ignored: this process is already pinned to CPU %d (by cpu_affinity=%r); one "
                            "process has one affinity", source, value, _pinned[1], _pinned[0])
            return _pinned[1]
        cpu = choose_cpu(setting, _slot)
        try:
            _pin_all_threads({cpu})
        except OSError as exc:
            raise ConfigError(f"{source}={value!r}: cannot pin process {os.getpid()} to CPU {cpu} ({exc}); give "
                              f"CPU ids this process may run on ({_fmt(allowed_cpus() or set())})") from None
        _pinned = (setting, cpu)
    log.info("process %s pinned to CPU %d (%s=%r)", os.getpid(), cpu, source, value)
    return cpu
