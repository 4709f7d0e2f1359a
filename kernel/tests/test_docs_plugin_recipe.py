"""docs/plugins.md's recipe works verbatim: extracted, built, installed, listed, checked, contract run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
BLOCK = re.compile(r"```(?:toml|python)\n# ([\w/]+\.(?:toml|py))\n(.*?)```", re.S)


def recipe_files() -> dict[str, str]:
    """Every fenced block of the page whose first line is ``# path``: {path: content}."""
    files = {m.group(1): f"# {m.group(1)}\n{m.group(2)}" for m in BLOCK.finditer(DOC.read_text())}
    assert set(files) >= {"pyproject.toml", "boostkernel_mybroker/plugin.py", "boostkernel_mybroker/broker.py",
                          "tests/test_contract.py"}, sorted(files)
    return files


def test_the_plugin_recipe_installs_lists_checks_and_passes_its_contract(tmp_path: Path) -> None:
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is needed to build the recipe (pip install uv)")
    src = tmp_path / "recipe"
    for rel, text in recipe_files().items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    site = tmp_path / "site"
    # A throwaway install target: the kernel the recipe depends on is the one under test, already here.
    subprocess.run([uv, "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(src)],
                   check=True, timeout=600)  # may wait for uv's cache lock on a busy machine
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    env.pop("BOOSTKERNEL_PLUGINS", None)

    listed = subprocess.run([sys.executable, "-m", "boostkernel", "plugins", "list", "--json"], env=env,
                            capture_output=True, text=True, timeout=300, check=True)
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows["mybroker"]["status"] == "loaded", rows.get("mybroker")
    assert rows["mybroker"]["version"] == "0.1.0"

    check = subprocess.run([sys.executable, "-m", "boostkernel", "plugins", "check"], env=env,
                           capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr

    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:pytest_nameko", "-p", "boostkernel.testing.plugin", "-p",
                          "no:cacheprovider", "-q", "-W", "error", "tests"], cwd=src, env=env,
                         capture_output=True, text=True, timeout=600)
    tail = run.stdout[-4000:] + run.stderr[-2000:]
    assert run.returncode == 0, tail
    passed = re.search(r"(\d+) passed", run.stdout)
    assert passed and int(passed.group(1)) >= 15, tail
    assert " failed" not in run.stdout and " error" not in run.stdout, tail


def test_a_service_the_kernel_does_not_know_fails_instead_of_skipping(tmp_path: Path) -> None:
    (tmp_path / "test_svc.py").write_text(
        "import pytest\n\n@pytest.mark.service('mybroker')\ndef test_x():\n    pass\n")
    env = {k: v for k, v in os.environ.items() if k not in ("BOOSTKERNEL_MYBROKER_URL", "CI")}
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:pytest_nameko", "-p", "boostkernel.testing.plugin", "-p",
                          "no:cacheprovider", "-q", "test_svc.py"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout
    assert "set BOOSTKERNEL_MYBROKER_URL" in run.stdout
