"""The boostkernel command, run as a user runs it (click's runner and a real subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

from click.testing import CliRunner

from boostkernel.cli import cli


def test_plugins_list_json_shows_defaults_loaded() -> None:
    out = subprocess.run([sys.executable, "-m", "boostkernel", "plugins", "list", "--json"],
                         capture_output=True, text=True, check=True)
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    for name in ("memory", "sqlite", "threads", "asyncio", "solo"):
        assert rows[name]["status"] == "loaded"
        assert rows[name]["distribution"] == f"boostkernel-{name}"
        assert rows[name]["version"]
        assert rows[name]["kinds"]
    assert rows["sqlite"]["capabilities"]["broker:sqlite"]["durable"] is True
    assert set(rows["sqlite"]["kinds"]) == {"broker", "store"}


def test_plugins_check_passes() -> None:
    out = subprocess.run([sys.executable, "-m", "boostkernel", "plugins", "check"], capture_output=True, text=True)
    problems = [line for line in out.stderr.splitlines() if line.startswith("FAIL")]
    mine = [p for p in problems if any(n in p for n in ("memory", "sqlite", "threads", "asyncio", "solo",
                                                        "builtin"))]
    assert mine == []


def test_queue_commands_roundtrip(tmp_path: Path) -> None:
    queue = f"cli_{uuid.uuid4().hex[:8]}"
    mod = tmp_path / "cli_tasks.py"
    mod.write_text(textwrap.dedent(f"""
        from boostkernel import boost

        @boost("{queue}", broker="sqlite", results=True)
        def add(x: int, y: int) -> int:
            return x + y
    """))
    runner = CliRunner()
    r = runner.invoke(cli, ["push", queue, "-m", str(mod), "--kwargs", '{"x": 1, "y": 2}'])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["count", queue, "-m", str(mod)])
    assert r.output.strip() == "1"
    r = runner.invoke(cli, ["push", queue, "-m", str(mod), "--kwargs", "not json"])
    assert r.exit_code != 0 and "--kwargs is not JSON" in r.output
    r = runner.invoke(cli, ["purge", queue, "-m", str(mod), "--yes"])
    assert "purged 1 message(s)" in r.output
    r = runner.invoke(cli, ["dlq", "list", queue, "-m", str(mod)])
    assert r.exit_code == 0


def test_worker_runs_a_module_until_sigterm(tmp_path: Path) -> None:
    import os
    import signal
    import time

    queue = f"w_{uuid.uuid4().hex[:8]}"
    out_file = tmp_path / "done.txt"
    mod = tmp_path / "worker_tasks.py"
    mod.write_text(textwrap.dedent(f"""
        from boostkernel import boost

        @boost("{queue}", broker="sqlite")
        def note(i: int) -> None:
            with open({str(out_file)!r}, "a") as fh:
                fh.write(f"{{i}}\\n")
    """))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    sys.path.insert(0, str(tmp_path))
    try:
        import importlib

        tasks = importlib.import_module("worker_tasks")
        tasks.note.push_many([(i,) for i in range(20)])
    finally:
        sys.path.remove(str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "boostkernel", "worker", "worker_tasks"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if out_file.exists() and len(out_file.read_text().split()) == 20:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert sorted(int(x) for x in out_file.read_text().split()) == list(range(20))
