"""``cpu_affinity`` / ``boostkernel worker --cpu-affinity``: each consuming process on one CPU.

Against real processes: the tasks themselves report the affinity of every thread of the process that runs
them (``/proc/self/task``), so a pin that missed a thread (the broker client's, the pool's) fails here.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from boostkernel import boost
from boostkernel.errors import ConfigError
from boostkernel.testing.helpers import import_module_file, wait_until

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux only")

BK = str(Path(sys.executable).parent / "boostkernel")
ALLOWED = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def q() -> str:
    return f"aff_{uuid.uuid4().hex[:8]}"


# --- decoration-time checks (no process is pinned) ----------------------------------------------------


@pytest.mark.parametrize(("value", "fix"), [
    (True, 'True: write "one"'),
    ("all", 'give "one"'),
    ("0,x", "'x' is not a CPU id or a range such as 0-3"),
    ([], "at least one is needed"),
    ([0, -1], "CPU ids are integers >= 0"),
    ([0, True], "CPU ids are integers >= 0"),
    (4096, 'give "one"'),
    ([4096], "CPU 4096 is not available to this process"),
    ("4090-4096", "is not available to this process"),
])
def test_a_bad_value_fails_at_decoration_with_the_fix(value: Any, fix: str) -> None:
    with pytest.raises(ConfigError) as exc:
        boost(q(), broker="memory", cpu_affinity=value)(lambda: None)
    assert fix in str(exc.value)
    assert f"cpu_affinity={value!r}" in str(exc.value)


def test_good_values_are_kept_and_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    assert boost(q(), broker="memory", cpu_affinity="one")(lambda: None).params.cpu_affinity == "one"
    ids = boost(q(), broker="memory", cpu_affinity=list(reversed(ALLOWED)))(lambda: None).params.cpu_affinity
    assert ids == tuple(ALLOWED)
    assert boost(q(), broker="memory")(lambda: None).params.cpu_affinity is None
    monkeypatch.setenv("BOOSTKERNEL_CPU_AFFINITY", f"{ALLOWED[0]}-{ALLOWED[-1]}")
    assert boost(q(), broker="memory")(lambda: None).params.cpu_affinity == f"{ALLOWED[0]}-{ALLOWED[-1]}"
    monkeypatch.setenv("BOOSTKERNEL_CPU_AFFINITY", "off")  # switches a pyproject.toml setting off
    assert boost(q(), broker="memory")(lambda: None).params.cpu_affinity is None


def test_no_affinity_support_warns_once_and_consumes_unpinned(monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    from boostkernel import affinity

    monkeypatch.setattr(affinity, "supported", lambda: False)
    monkeypatch.setattr(affinity, "_warned_unsupported", False)
    before = os.sched_getaffinity(0)
    with caplog.at_level(logging.WARNING, logger="boostkernel.worker"):
        assert affinity.pin_process("one") is None
        assert affinity.pin_process("one") is None
    assert [r.getMessage() for r in caplog.records].count(
        "cpu_affinity='one' is ignored: this platform cannot pin a process to a CPU (no os.sched_setaffinity; "
        "Linux only); consuming unpinned") == 1
    assert os.sched_getaffinity(0) == before


def test_more_processes_than_cpus_is_allowed_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    from boostkernel.overlay import _check_spread

    with caplog.at_level(logging.WARNING, logger="boostkernel.worker"):
        _check_spread("one", len(ALLOWED))
        assert caplog.records == []
        _check_spread("one", len(ALLOWED) + 1)
    cpus = ",".join(map(str, ALLOWED))
    assert [r.getMessage() for r in caplog.records] == [
        f"cpu_affinity='one': {len(ALLOWED) + 1} worker processes on {len(ALLOWED)} CPU(s) ({cpus}): some share "
        "a CPU, each pinned to it"]


# --- real processes -----------------------------------------------------------------------------------

TASKS = '''
import json, os, sys, threading, time
from boostkernel import boost

OUT = {out!r}


def masks():
    """The affinity of every thread of this process, by thread id."""
    out = {{}}
    for tid in os.listdir("/proc/self/task"):
        try:
            out[tid] = sorted(os.sched_getaffinity(int(tid)))
        except ProcessLookupError:
            pass
    return out


@boost({queue!r}, broker="sqlite", workers=2, prefetch=1, processes={processes}, cpu_affinity={affinity!r})
def report(i):
    time.sleep(0.05)
    line = json.dumps({{"i": i, "pid": os.getpid(), "masks": masks(), "threads": threading.active_count()}})
    with open(OUT, "a") as fh:
        fh.write(line + "\\n")


if __name__ == "__main__":
    import logging
    logging.basicConfig(level=logging.INFO)  # the overlay's "started worker process PID (i/N)" lines
    early = threading.Event()
    threading.Thread(target=early.wait, name="started-before-consume", daemon=True).start()
    report.consume()
    report.wait()
'''


def write_tasks(tmp_path: Path, processes: int = 1, affinity: Any = None) -> tuple[Any, Path]:
    queue, out = q(), tmp_path / "reports.jsonl"
    name = f"afftasks_{queue}"
    mod = import_module_file(tmp_path, name, TASKS.format(out=str(out), queue=queue, processes=processes,
                                                          affinity=affinity))
    return mod, out


def reports(out: Path) -> list[dict[str, Any]]:
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def run_until(args: list[str], cwd: Path, out: Path, done: Any, timeout: float = 90,
              output: list[str] | None = None) -> list[dict[str, Any]]:
    """Run ``args`` until ``done(reports)``; stop it with SIGTERM; return the reports (fail with its output).
    ``output`` receives the process's output lines."""
    proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": str(cwd), "PYTHONUNBUFFERED": "1"})
    lines: list[str] = [] if output is None else output

    def read() -> None:
        assert proc.stdout is not None
        with proc.stdout:
            lines.extend(proc.stdout)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        ok = wait_until(lambda: done(reports(out)) or proc.poll() is not None, timeout, 0.05)
        got = reports(out)
        assert ok and done(got), f"exit {proc.poll()}, {len(got)} report(s):\n{''.join(lines)[-4000:]}"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        reader.join(10)
    return got


def slots(output: list[str]) -> dict[int, int]:
    """pid -> slot (0-based) of each child, from the overlay's "started worker process PID (i/N)" lines."""
    return {int(m[1]): int(m[2]) - 1 for m in re.finditer(r"started worker process (\d+) \((\d+)/\d+\)",
                                                          "".join(output))}


def by_pid(got: list[dict[str, Any]]) -> dict[int, dict[str, list[int]]]:
    """The last report of each process: thread id -> affinity (the latest one has the most threads)."""
    return {r["pid"]: r["masks"] for r in got}


@pytest.mark.skipif(len(ALLOWED) < 2, reason="spreading processes over CPUs needs 2 CPUs")
def test_processes_2_puts_each_child_on_its_own_cpu(tmp_path: Path) -> None:
    mod, out = write_tasks(tmp_path, processes=2, affinity="one")
    mod.report.push_many([(i,) for i in range(1000)])  # both children take part before it drains
    script = tmp_path / f"{mod.__name__}.py"
    output: list[str] = []
    got = run_until([sys.executable, str(script)], tmp_path, out, lambda r: len({x["pid"] for x in r}) >= 2,
                    output=output)
    pids = by_pid(got)
    assert os.getpid() not in pids and len(pids) == 2
    slot_of = slots(output)
    cpus = []
    for pid, masks in pids.items():
        assert len(masks) >= 3, masks  # the main thread, the consumer's, a pool thread at least
        assert len({tuple(m) for m in masks.values()}) == 1, f"pid {pid}: threads pinned differently: {masks}"
        (mask,) = {tuple(m) for m in masks.values()}
        assert len(mask) == 1, f"pid {pid} not on one CPU: {masks}"
        assert mask[0] == ALLOWED[slot_of[pid]], (pid, slot_of, masks)  # child i on the i-th allowed CPU
        cpus.append(mask[0])
    assert sorted(cpus) == ALLOWED[:2]


def test_consume_in_this_process_pins_every_thread_also_those_started_before(tmp_path: Path) -> None:
    mod, out = write_tasks(tmp_path, affinity=[ALLOWED[-1]])
    mod.report.push_many([(i,) for i in range(3)])
    got = run_until([sys.executable, str(tmp_path / f"{mod.__name__}.py")], tmp_path, out, lambda r: len(r) >= 3)
    (masks,) = by_pid(got).values()
    # main thread, the thread started before consume(), the consumer's, the pool's
    assert len(masks) >= 4, masks
    assert {tuple(m) for m in masks.values()} == {(ALLOWED[-1],)}, masks


def test_two_boosters_of_one_process_share_its_cpu_and_a_different_setting_warns(tmp_path: Path) -> None:
    """The second booster's consume() (and decorating a third after pinning) must neither fail nor move
    the process: one process, one CPU."""
    script = tmp_path / "two.py"
    script.write_text(textwrap.dedent(f"""
        import json, logging, os
        from boostkernel import boost
        logging.basicConfig(level=logging.INFO)

        a = boost("{q()}", broker="memory", cpu_affinity={ALLOWED!r})(lambda: None)
        b = boost("{q()}", broker="memory", cpu_affinity={ALLOWED!r})(lambda: None)
        a.consume()
        first = os.sched_getaffinity(0)
        b.consume()
        c = boost("{q()}", broker="memory", cpu_affinity={[ALLOWED[-1]]!r})(lambda: None)
        c.consume()
        print("CPUS", json.dumps([sorted(first), sorted(os.sched_getaffinity(0))]))
    """))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    first, now = json.loads(r.stdout.split("CPUS ")[1])
    assert first == now and len(now) == 1, r.stdout  # b and c did not move it
    assert len(re.findall(r"process \d+ pinned to CPU", r.stderr)) == 1, r.stderr  # once, by a
    assert (f"cpu_affinity=({ALLOWED[-1]},) ignored: this process is already pinned to CPU {now[0]} "
            f"(by cpu_affinity={tuple(ALLOWED)!r})") in r.stderr, r.stderr


def test_worker_cli_flag_pins_and_the_default_leaves_affinity_alone(tmp_path: Path) -> None:
    mod, out = write_tasks(tmp_path)  # no cpu_affinity in @boost
    mod.report.push_many([(i,) for i in range(3)])
    got = run_until([BK, "worker", mod.__name__, "--cpu-affinity", str(ALLOWED[-1])], tmp_path, out,
                    lambda r: len(r) >= 3)
    (masks,) = by_pid(got).values()
    assert {tuple(m) for m in masks.values()} == {(ALLOWED[-1],)}, masks

    out.unlink()
    mod.report.push_many([(i,) for i in range(3)])
    got = run_until([BK, "worker", mod.__name__], tmp_path, out, lambda r: len(r) >= 3)
    (masks,) = by_pid(got).values()
    assert {tuple(m) for m in masks.values()} == {tuple(ALLOWED)}, masks  # untouched: what the parent has


@pytest.mark.skipif(len(ALLOWED) < 2, reason="spreading processes over CPUs needs 2 CPUs")
def test_worker_cli_flag_spreads_processes(tmp_path: Path) -> None:
    mod, out = write_tasks(tmp_path)
    mod.report.push_many([(i,) for i in range(1000)])  # both children take part before it drains
    output: list[str] = []
    got = run_until([BK, "worker", mod.__name__, "--processes", "2", "--cpu-affinity", f"{ALLOWED[1]},{ALLOWED[0]}"],
                    tmp_path, out, lambda r: len({x["pid"] for x in r}) >= 2, output=output)
    slot_of = slots(output)
    for pid, masks in by_pid(got).items():  # every thread of child i on the i-th CPU of the list (sorted)
        assert {tuple(m) for m in masks.values()} == {(ALLOWED[slot_of[pid]],)}, (pid, slot_of, masks)
    assert len(by_pid(got)) == 2


def test_worker_cli_flag_refuses_a_bad_value(tmp_path: Path) -> None:
    mod, _ = write_tasks(tmp_path)
    r = subprocess.run([BK, "worker", mod.__name__, "--cpu-affinity", "4096"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert r.returncode == 1
    assert "cpu_affinity='4096': CPU 4096 is not available to this process" in r.stderr, r.stderr
    assert 'or "one"' in r.stderr

