"""Shared by the benchmark scripts (run as ``python benchmarks/bench_X.py``: this folder is on sys.path)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from boostkernel import boost

HERE = Path(__file__).resolve().parent


def booster_run(n: int, *, concurrency: str, workers: int, batch: bool, name: str = "bench",
                batch_size: int | None = None, purge: bool = True, timeout: float = 600,
                **boost_options: Any) -> dict[str, float]:
    """Publish ``n`` no-op tasks, then consume them from ``consume()`` until the last one finished (acks
    included); return publish/s and consume/s. ``batch`` publishes with ``push_many`` (in chunks of
    ``batch_size`` when given), else with ``push()`` one by one; ``purge`` empties the queue first; raises
    if not all ran within ``timeout`` seconds. ``boost_options`` select the broker."""
    counter = [0]
    finished = threading.Event()
    lock = threading.Lock()

    @boost(f"{name}_{concurrency}_{uuid.uuid4().hex[:6]}", concurrency=concurrency, workers=workers,
           validate_args=False, **boost_options)
    def noop(x: int) -> None:
        with lock:
            counter[0] += 1
            if counter[0] == n:
                finished.set()

    if purge:
        noop.purge()
    t0 = time.perf_counter()
    if batch:
        size = batch_size or n
        for i in range(0, n, size):
            noop.push_many([(j,) for j in range(i, min(n, i + size))])
    else:
        push = noop.push
        for i in range(n):
            push(i)
    t_pub = time.perf_counter() - t0
    t1 = time.perf_counter()
    noop.consume()
    if not finished.wait(timeout):
        raise RuntimeError(f"only {counter[0]} of {n} ran")
    t_con = time.perf_counter() - t1
    noop.stop()
    return {"publish_per_s": n / t_pub, "consume_per_s": n / t_con}


def counting_booster(broker: str, url: str, concurrency: str, workers: int, prefetch: int | None,
                     counter: list[None], **boost_options: Any) -> Any:
    """A ``noop(i)`` task on a fresh queue ``bench_<concurrency>_<random>`` of ``broker`` at ``url`` that
    appends to ``counter`` (``consume_rate`` waits on its length)."""
    q = f"bench_{concurrency}_{uuid.uuid4().hex[:8]}"

    @boost(q, broker=broker, broker_url=url, concurrency=concurrency, workers=workers, prefetch=prefetch,
           **boost_options)
    def noop(i: int) -> None:
        counter.append(None)

    return noop


def body(i: int) -> bytes:
    """A raw loop's message: the kernel's JSON envelope of ``task(i)``, so raw rows move the same bytes."""
    return orjson.dumps({"v": 1, "id": str(uuid.uuid4()), "queue": "raw", "args": [i], "kwargs": {},
                         "published_at": time.time(), "attempt": 0})


def rounds_args(doc: str | None, *, n: int, url_env: str, url: str, json_name: str,
                extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    """The command line of a benchmark that interleaves raw and boostkernel rows over ``--repeat`` rounds
    (``extra`` adds the benchmark's own options)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=n, help=f"messages per measurement (default {n})")
    ap.add_argument("--url", default=os.environ.get(url_env, url))
    ap.add_argument("--threads", type=int, default=16, help="workers of the threads consume row")
    ap.add_argument("--repeat", type=int, default=3, help="rounds (raw and boostkernel rows interleaved); median of each")
    ap.add_argument("--json", default=str(HERE / "results" / json_name), help="where to write the JSON")
    if extra is not None:
        extra(ap)
    return ap.parse_args()


def consume_rows(row: Callable[..., None], bk_consume: Callable[..., float], url: str, n: int, threads: int) -> None:
    """The four ``consume()`` rows (solo and threads, default prefetch and prefetch 100) of a rounds benchmark."""
    row("boostkernel", "consume(), solo (default prefetch 4)", consume=bk_consume(url, n, "solo", 1))
    row("boostkernel", "consume(), solo, prefetch 100", consume=bk_consume(url, n, "solo", 1, 100))
    row("boostkernel", f"consume(), threads x{threads} (default prefetch)", consume=bk_consume(url, n, "threads", threads))
    row("boostkernel", f"consume(), threads x{threads}, prefetch 100",
        consume=bk_consume(url, n, "threads", threads, 100))


def print_consume_ratios(table: Table, threads: int) -> None:
    """After a rounds benchmark: each consume row's median as a share of the median raw consume loop, and
    the same share round by round (raw and ours measured minutes apart, so a load change shows here)."""
    top = table.top_consume
    modes = (("solo, default prefetch", "consume(), solo (default"), ("solo, prefetch 100", "consume(), solo, prefetch"),
             (f"threads x{threads}, default prefetch", f"consume(), threads x{threads} (default"),
             (f"threads x{threads}, prefetch 100", f"consume(), threads x{threads}, prefetch"))
    print_ratios(table.raw_consume(), [(name, top(start)) for name, start in modes])
    raw = table.samples("(raw)", "")
    if len(raw) > 1:
        for name, start in modes:
            ours = table.samples("boostkernel", start)
            print(f"  per round, {name}: " + ", ".join(f"{o / r:.0%}" for o, r in zip(ours, raw)))


def _rate(v: float | None) -> str:
    return f"{v:>12,.0f}" if v else f"{'':>12}"


class Table:
    """The printed results table of a raw-vs-ours benchmark: ``row()`` prints a measurement at once and
    records it in ``rows`` (JSON-ready dicts). ``notes`` adds a note column (and a ``note`` key);
    ``keep_best`` keeps one row per (framework, mode) with the **median** of the figures seen over the rounds
    (every sample is kept in its ``samples``; the name is historical: it kept the best once)."""

    def __init__(self, name_width: int, mode_width: int, *, notes: bool = False, keep_best: bool = False) -> None:
        self.name_width, self.mode_width, self.notes, self.keep_best = name_width, mode_width, notes, keep_best
        self._rows: list[dict[str, Any]] = []
        self._best: dict[tuple[str, str], dict[str, Any]] = {}

    @property
    def rows(self) -> list[dict[str, Any]]:
        return list(self._best.values()) if self.keep_best else self._rows

    def header(self) -> None:
        print(f"{'framework':<{self.name_width}} {'mode':<{self.mode_width}} {'publish/s':>12} {'consume/s':>12}")

    def line(self, name: str, mode: str, publish: float | None, consume: float | None, note: str = "",
             flush: bool = False) -> None:
        text = f"{name:<{self.name_width}} {mode:<{self.mode_width}} {_rate(publish)} {_rate(consume)}"
        print(f"{text}  {note}" if self.notes else text, flush=flush)

    def row(self, name: str, mode: str, publish: float | None = None, consume: float | None = None,
            note: str = "") -> None:
        if self.keep_best:
            r = self._best.setdefault((name, mode), {"framework": name, "mode": mode, "publish_per_s": None,
                                                     "consume_per_s": None, "samples": {}})
            for k, v in (("publish_per_s", publish), ("consume_per_s", consume)):
                if v is not None:
                    seen = r["samples"].setdefault(k, [])
                    seen.append(v)
                    r[k] = statistics.median(seen)
        else:
            r = {"framework": name, "mode": mode, "publish_per_s": publish, "consume_per_s": consume}
            if self.notes:
                r["note"] = note
            self._rows.append(r)
        self.line(name, mode, publish, consume, note, flush=True)

    def print_best(self, repeat: int) -> None:
        print(f"\nmedian of {repeat} round(s):")
        for r in self.rows:
            self.line(r["framework"], r["mode"], r["publish_per_s"], r["consume_per_s"])

    def top_consume(self, mode_start: str) -> float:
        return max(float(r["consume_per_s"] or 0) for r in self.rows if r["mode"].startswith(mode_start))

    def samples(self, framework_part: str, mode_start: str) -> list[float]:
        """The consume samples, round by round, of the first row whose framework contains ``framework_part``
        and whose mode starts with ``mode_start`` (``keep_best`` tables)."""
        for r in self.rows:
            if framework_part in r["framework"] and r["mode"].startswith(mode_start) and r["consume_per_s"]:
                return list(r.get("samples", {}).get("consume_per_s", []))
        return []

    def raw_consume(self) -> float:
        return max(float(r["consume_per_s"] or 0) for r in self.rows if "(raw)" in r["framework"])


def print_ratios(raw: float, rates: Any, target: float = 0.8) -> None:
    """Print each ``(name, consume/s)`` of ``rates`` as a share of the raw consume loop against ``target``."""
    print()
    for name, v in rates:
        print(f"consume {name} / raw loop: {v / raw:.0%} (target >= {target:.0%}): {'OK' if v >= target * raw else 'below'}")


def print_targets(checks: list[tuple[str, bool | None, str]]) -> list[dict[str, Any]]:
    """Print the ``(target, ok, detail)`` checks (``ok`` None: not measurable) and return them for the JSON."""
    print("\ntargets:")
    for name, ok, detail in checks:
        print(f"  [{'PASS' if ok else ('n/a ' if ok is None else 'FAIL')}] {name}: {detail}")
    return [{"target": a, "ok": b, "detail": c} for a, b, c in checks]


def write_json(path: str, out: dict[str, Any], indent: int = 2, say: bool = True) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=indent))
    if say:
        print(f"\nwrote {path}")


def broker_layer_rate(b: Any, n: int, timeout: float = 2.0, batch: int = 100) -> float:
    """The broker layer alone: ``fetch(batch)`` + JSON decode + ``ack_many`` until ``n`` are done (or a fetch
    comes back empty); deliveries per second. Closes ``b``."""
    done = 0
    t0 = time.perf_counter()
    while done < n:
        got = b.fetch(batch, timeout)
        if not got:
            break
        for d in got:
            orjson.loads(d.body)
        b.ack_many(got)
        done += len(got)
    dt = time.perf_counter() - t0
    b.close()
    return done / dt


def consume_rate(f: Any, n: int, done: list[None]) -> float:
    """``f.consume()`` until ``done`` (appended to by the task) holds ``n``; tasks per second. Stops ``f``."""
    t0 = time.perf_counter()
    f.consume()
    while len(done) < n:
        time.sleep(0.002)
    dt = time.perf_counter() - t0
    f.stop(10)
    return n / dt


def run_peer(name: str, url: str, n: int) -> dict[str, Any]:
    """Run ``benchmarks/peers/NAME_bench.py --json`` and return its JSON line (or a ``skipped`` reason)."""
    script = HERE / "peers" / f"{name}_bench.py"
    if not script.exists():
        return {"framework": name, "skipped": f"{script.relative_to(HERE.parent)} not present"}
    try:
        proc = subprocess.run([sys.executable, str(script), "--broker-url", url, "-n", str(n), "--json"],
                              capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return {"framework": name, "skipped": "timed out after 900 s"}
    for line in reversed(proc.stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return dict(json.loads(line))
            except json.JSONDecodeError:
                break
    return {"framework": name, "skipped": f"exit {proc.returncode}: {(proc.stderr or proc.stdout)[-300:]}"}


def rate_in_own_process(module: str, fn: str, *args: Any, timeout: float = 900) -> Any:
    """``module.fn(*args)`` (a benchmark function returning a rate, or any JSON value) run in a fresh Python
    process, for rows that change the process itself: ``cpu_affinity`` pins a process for good, so a pinned
    row must not run in the process that measures the raw loop. ``args`` go through JSON."""
    code = (f"import json, logging, sys; sys.path.insert(0, {str(HERE)!r}); "
            "logging.getLogger('boostkernel').setLevel(logging.ERROR); "
            f"import {module} as m; print(json.dumps(m.{fn}(*json.loads(sys.argv[1]))))")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{module}.{fn}{tuple(args)} in its own process: exit {proc.returncode}\n"
                           f"{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
