"""Every CLI error is one line with the fix and a non-zero exit; ``--debug`` shows the traceback (issue 13)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "BOOSTKERNEL_DATA_DIR": str(tmp_path / "data")}


@pytest.fixture
def tasks(tmp_path: Path) -> tuple[Path, str]:
    queue = f"clierr_{uuid.uuid4().hex[:8]}"
    mod = tmp_path / "clierr_tasks.py"
    mod.write_text(textwrap.dedent(f"""
        from boostkernel import boost

        @boost("{queue}", results=True)
        def add(x: int, y: int) -> int:
            return x + y
    """))
    return mod, queue


def bk(*args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 60,
       ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "boostkernel", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)


def one_line_error(out: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert out.returncode == 1, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("Error: "), lines
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def test_push_with_wrong_arguments(tasks: tuple[Path, str], env: dict[str, str]) -> None:
    mod, queue = tasks
    out = bk("push", queue, "-m", str(mod), "--kwargs", '{"x": 1}', env=env)
    one_line_error(out, "missing a required argument: 'y'", "--kwargs")
    out = bk("push", queue, "-m", str(mod), "--kwargs", "[1, 2]", env=env)
    assert out.returncode == 2 and "must be a JSON object" in out.stderr and "Traceback" not in out.stderr


def test_count_and_dlq_with_a_typo_or_unreachable_broker(env: dict[str, str]) -> None:
    one_line_error(bk("count", "q", "--broker", "rediss", env=env), "Did you mean 'redis'?")
    one_line_error(bk("dlq", "list", "q", "--broker", "sqllite", env=env), "Did you mean 'sqlite'?")
    one_line_error(bk("count", "q", "--broker", "redis://127.0.0.1:1/0", env=env),
                   "cannot reach the broker", "Is the server running?")


def test_worker_on_a_missing_module(tmp_path: Path, env: dict[str, str]) -> None:
    one_line_error(bk("worker", "no_such_module_xyz", env=env, cwd=tmp_path), "'no_such_module_xyz'", ".py file")
    one_line_error(bk("worker", "./missing.py", env=env, cwd=tmp_path), "No such file", "Check the path")


def test_debug_shows_the_traceback(tmp_path: Path, env: dict[str, str]) -> None:
    out = bk("--debug", "worker", "no_such_module_xyz", env=env, cwd=tmp_path)
    assert out.returncode == 1
    assert "Traceback" in out.stderr and "ModuleNotFoundError" in out.stderr


def test_push_wait_without_module_reads_the_result(tasks: tuple[Path, str], env: dict[str, str]) -> None:
    """Before: 'keeps no results' even though the booster has results=True (the stand-in had them off)."""
    mod, queue = tasks
    worker = subprocess.Popen([sys.executable, "-m", "boostkernel", "worker", str(mod)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        out = bk("push", queue, "--kwargs", '{"x": 1, "y": 2}', "--wait", "30", env=env)
        assert out.returncode == 0, out.stderr
        task_id, result = out.stdout.split()
        assert result == "3"
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=60)


def test_push_wait_timeout_is_one_line(env: dict[str, str]) -> None:
    queue = f"clierr_{uuid.uuid4().hex[:8]}"  # nobody consumes it
    one_line_error(bk("push", queue, "--wait", "0.2", env=env), "within 0.2s", "results=True")
