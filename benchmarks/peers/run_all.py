"""Run every peer-framework benchmark for one broker URL, print a table, write benchmarks/results/peers-<broker>.json.

    python benchmarks/peers/run_all.py --broker-url redis://127.0.0.1:6379/14 -n 10000
    python benchmarks/peers/run_all.py --broker-url amqp://guest:guest@127.0.0.1:5672// -n 10000

Each script runs in its own subprocess (funboost patches print/logging on import; a crashed framework
must not take the others down). Redis runs celery, dramatiq, rq (SimpleWorker), rq-fork (RQ's default
fork-per-job worker, with n capped by --rq-fork-n because it manages ~30-150 jobs/s), huey (at-most-once:
shown for reference, not the same guarantee) and funboost; RabbitMQ runs celery, dramatiq and funboost.
``--only celery,dramatiq`` restricts the list; ``--repeat R`` runs each script R times and keeps the run with
the median consume rate (this machine is shared, so single runs are noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peerbench_common as common  # noqa: E402

PEERS = Path(__file__).resolve().parent
RESULTS = PEERS.parent / "results"

# (label, script, extra args, brokers)
SUITE: list[tuple[str, str, list[str], tuple[str, ...]]] = [
    ("celery", "celery_bench.py", [], ("redis", "rabbitmq")),
    ("dramatiq", "dramatiq_bench.py", [], ("redis", "rabbitmq")),
    ("funboost", "funboost_bench.py", [], ("redis", "rabbitmq")),
    ("rq", "rq_bench.py", ["--worker-class", "simple"], ("redis",)),
    ("rq-fork", "rq_bench.py", ["--worker-class", "default"], ("redis",)),
    ("huey", "huey_bench.py", [], ("redis",)),
]


def run_script(script: str, args: list[str], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, str(PEERS / script), *args, "--json"]
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout:.0f}s", "command": " ".join(cmd[1:])}
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()]
    try:
        result = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        return {
            "ok": False,
            "error": f"rc={proc.returncode}, no JSON line; stderr tail: {proc.stderr[-1500:]}",
            "command": " ".join(cmd[1:]),
        }
    result["command"] = "python " + " ".join([str(Path(cmd[1]).relative_to(PEERS.parent.parent)), *cmd[2:]])
    result["elapsed_s"] = round(time.time() - t0, 1)
    return result


def print_table(rows: list[dict[str, Any]], title: str) -> None:
    headers = ["framework", "ver", "n", "conc", "publish/s", "consume/s", "w/ start-up/s", "done", "mode"]
    table = [
        [
            r.get("label", r.get("framework", "?")),
            str(r.get("version", "")),
            str(r.get("n", "")),
            str(r.get("concurrency", "")),
            f"{r['publish_per_s']:,.0f}" if "publish_per_s" in r else "-",
            f"{r['consume_per_s']:,.0f}" if "consume_per_s" in r else "-",
            f"{r['consume_wall_per_s']:,.0f}" if "consume_wall_per_s" in r else "-",
            f"{r.get('completed', 0)}/{r.get('n', '?')}" if "completed" in r else "FAIL",
            r.get("mode", r.get("error", "")),
        ]
        for r in rows
    ]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers[:-1])]
        print(title)
        print("  ".join(h.ljust(w) for h, w in zip(headers[:-1], widths)) + "  mode")
        for row in table:
            print("  ".join(c.ljust(w) for c, w in zip(row[:-1], widths)) + "  " + row[-1])
        return
    t = Table(title=title, show_lines=False)
    for h in headers:
        t.add_column(h, justify="left" if h in ("framework", "mode", "ver") else "right", overflow="fold")
    for row in table:
        t.add_row(*row)
    Console(width=200).print(t)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--broker-url", default=common.DEFAULT_REDIS_URL)
    p.add_argument("-n", type=int, default=10_000)
    p.add_argument("--rq-fork-n", type=int, default=2_000, help="n for RQ's fork-per-job worker (default 2000)")
    p.add_argument("--only", default="", help="comma-separated labels (celery,dramatiq,funboost,rq,rq-fork,huey)")
    p.add_argument("--repeat", type=int, default=1, help="runs per script; the median-consume run is kept")
    p.add_argument("--timeout", type=float, default=180.0, help="hard limit per script run (s)")
    p.add_argument("--out", default=None, help="output JSON path (default benchmarks/results/peers-<broker>.json)")
    args = p.parse_args()

    kind = common.broker_kind(args.broker_url)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    rows: list[dict[str, Any]] = []
    for label, script, extra, brokers in SUITE:
        if kind not in brokers or (only and label not in only):
            continue
        n = min(args.n, args.rq_fork_n) if label == "rq-fork" else args.n
        script_args = ["--broker-url", args.broker_url, "-n", str(n), *extra]
        runs = []
        for i in range(args.repeat):
            sys.stderr.write(f"[run_all] {label} on {kind} n={n} (run {i + 1}/{args.repeat}) ...\n")
            r = run_script(script, script_args, args.timeout)
            sys.stderr.write(
                f"[run_all]   -> publish {r.get('publish_per_s', '-')}/s consume {r.get('consume_per_s', '-')}/s "
                f"ok={r.get('ok')} {r.get('error', '')}\n"
            )
            runs.append(r)
        # the median is taken over complete runs only; a failed/partial run is kept in "runs" for inspection
        good = [r for r in runs if r.get("ok")] or [r for r in runs if r.get("completed")]
        if good:
            med = statistics.median_low([r["consume_per_s"] for r in good])
            chosen = dict(next(r for r in good if r["consume_per_s"] == med))
        else:
            chosen = dict(runs[-1])
        chosen["label"] = label
        if len(runs) > 1:
            chosen["runs"] = [
                {k: r.get(k) for k in ("ok", "completed", "publish_per_s", "consume_per_s", "loadavg_1m", "error")}
                | ({"worker_log_path": r["worker_log_path"]} if "worker_log_path" in r else {})
                for r in runs
            ]
        rows.append(chosen)

    print_table(rows, f"peer frameworks, broker={kind} ({common.mask_url(args.broker_url)}), n={args.n}")
    out = Path(args.out) if args.out else RESULTS / f"peers-{kind}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "broker": kind,
        "broker_url": common.mask_url(args.broker_url),
        "n": args.n,
        "repeat": args.repeat,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "method": "publish n in a loop (timed), then 1 worker process; consume_per_s = (n-1)/(last-first task end)",
        "results": rows,
    }
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")
    return 0 if all(r.get("ok") or r.get("label") == "rq-fork" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
