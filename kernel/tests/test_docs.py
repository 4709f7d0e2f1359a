"""Meta-tests: every hook is documented, and the README's commands exist."""

from __future__ import annotations

import inspect
from pathlib import Path

from boostkernel import hookspecs

ROOT = Path(__file__).resolve().parents[2]


def test_every_hookspec_is_documented() -> None:
    doc = (ROOT / "docs" / "hooks.md").read_text()
    specs = [n for n, f in vars(hookspecs).items() if inspect.isfunction(f) and hasattr(f, "boostkernel_spec")]
    assert specs, "hookspecs found"
    missing = [n for n in specs if f"## {n}(" not in doc]
    assert missing == []


def test_every_hookspec_has_a_docstring() -> None:
    for name, f in vars(hookspecs).items():
        if inspect.isfunction(f) and hasattr(f, "boostkernel_spec"):
            assert (f.__doc__ or "").strip(), name


def test_readme_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "uv sync --all-packages && uv run boostkernel demo" in readme
    parallel, serial = 'uv run pytest -n 3 --dist loadscope -m "not serial"', "uv run pytest -m serial"
    assert f"\n{parallel} && {serial}\n" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert parallel in ci and serial in ci, "CI runs the README's test command"


def test_ci_runs_the_docs_build_the_wheelhouse_check_and_the_inexact_sync() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "mkdocs build --strict" in ci
    assert "scripts/build_wheelhouse.py" in ci and "--check redis,celery" in ci
    assert "uv sync --all-packages --inexact" in ci
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "wheelhouse/" in ignored and "site/" in ignored
