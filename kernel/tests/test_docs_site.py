"""The documentation site builds with mkdocs-material in strict mode: a dead internal link, a missing anchor
or a link to a repository file that does not exist fails the build (issue 13: docs/reliability.md had a
dead link). CI also runs ``mkdocs build --strict`` as its own step."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("mkdocs", reason="the `docs` dependency group is not installed (uv sync installs it)")


def _build(root: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(root / "mkdocs.yml"),
                           "-d", str(out)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def test_site_builds_strict(tmp_path: Path) -> None:
    out = _build(ROOT, tmp_path / "site")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "site" / "index.html").exists()
    assert (tmp_path / "site" / "controls" / "retry" / "index.html").exists()


@pytest.mark.parametrize("bad", [
    "[gone](no-such-page.md)",
    "[anchor](index.md#no-such-section)",
    "[research](../../shared/reference/reliability.md)",  # the dead link docs/reliability.md had
    "[file](../plugins/brokers/no_such_plugin/README.md)",
])
def test_a_dead_link_fails_the_build(bad: str, tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "docs", copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    (copy / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "mkdocs_hooks.py", copy / "scripts" / "mkdocs_hooks.py")
    (copy / "plugins").symlink_to(ROOT / "plugins")
    (copy / "examples").symlink_to(ROOT / "examples")
    (copy / "kernel").symlink_to(ROOT / "kernel")
    (copy / "benchmarks").symlink_to(ROOT / "benchmarks")
    page = copy / "docs" / "reliability.md"
    page.write_text(page.read_text() + f"\nSee {bad}.\n")
    out = _build(copy, tmp_path / "site")
    assert out.returncode != 0, f"{bad} did not fail the build"
