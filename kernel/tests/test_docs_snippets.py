"""Every fenced code block of README.md and docs/**/*.md runs as written (issue 13).

* ``python`` blocks run as a script in a fresh process, in an empty directory with a private
  ``BOOSTKERNEL_DATA_DIR`` (the embedded SQLite default) or against the local services;
* ``toml`` blocks are parsed;
* any other block must say why it does not run.

Directives are HTML comments on the line(s) right before the fence (invisible on the rendered page):

    <!-- docs-test: skip: REASON -->        not run; the reason is required (and reported below)
    <!-- docs-test: services: redis, rabbitmq -->
                                            needs these services (skips locally when unreachable, fails in CI)
    <!-- docs-test: expect: TEXT -->        the script's stdout must contain TEXT (repeatable)

``test_every_block_is_accounted_for`` fails for a block that neither runs nor carries a reason.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
RUNNABLE = {"python", "toml"}
_FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)
_DIRECTIVE = re.compile(r"<!--\s*docs-test:\s*(?P<key>[\w-]+)\s*(?::\s*(?P<value>.*?))?\s*-->")


@dataclass
class Block:
    page: str
    line: int
    lang: str
    code: str
    skip: str | None = None
    services: list[str] = field(default_factory=list)
    expect: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def _directives(text: str, start: int) -> list[tuple[str, str]]:
    """The docs-test comments on the lines directly above offset ``start`` (blank lines end the run)."""
    lines = text[:start].splitlines()
    found: list[tuple[str, str]] = []
    for raw in reversed(lines):
        m = _DIRECTIVE.fullmatch(raw.strip())
        if not m:
            break
        found.append((m["key"], (m["value"] or "").strip()))
    return list(reversed(found))


def collect() -> list[Block]:
    blocks = []
    for path in PAGES:
        text = path.read_text()
        for m in _FENCE.finditer(text):
            b = Block(str(path.relative_to(ROOT)), text.count("\n", 0, m.start()) + 1, m["lang"],
                      textwrap.dedent(m["body"]))
            for key, value in _directives(text, m.start()):
                if key == "skip":
                    b.skip = value or None
                    if b.skip is None:
                        raise AssertionError(f"{b.id}: 'docs-test: skip' needs a reason")
                elif key == "services":
                    b.services += [s.strip() for s in value.split(",") if s.strip()]
                elif key == "expect":
                    b.expect.append(value)
                else:
                    raise AssertionError(f"{b.id}: unknown directive docs-test: {key}")
            blocks.append(b)
    return blocks


BLOCKS = collect()


def _run_by_another_test(reason: str) -> bool:
    """The skip reason names an existing test module that runs the block (e.g. a file of a recipe)."""
    named = re.findall(r"[\w/]+/test_\w+\.py", reason)
    return bool(named) and all((ROOT / n).is_file() for n in named)


def test_every_block_is_accounted_for() -> None:
    unaccounted = [b.id for b in BLOCKS if b.lang not in RUNNABLE and not b.skip]
    assert unaccounted == [], "give these blocks a runnable language or a '<!-- docs-test: skip: REASON -->'"
    skipped = [b for b in BLOCKS if b.skip]
    run = [b for b in BLOCKS if not b.skip]
    # Today 34 blocks run and 32 are skipped: every skipped one is a shell command (install lines, benchmark
    # runs, synopses with placeholders), an output, a list of alternative lines, or a python file that another
    # test runs (it names that test, which must exist). A drop in the number of runnable blocks means examples
    # were turned off: look at why.
    assert len(run) >= 34, len(run)
    assert not [b.id for b in skipped if b.lang == "python" and "not a program" not in (b.skip or "")
                and "hypothetical" not in (b.skip or "") and "benchmark" not in (b.skip or "")
                and not _run_by_another_test(b.skip or "")]
    assert all(len(b.skip or "") >= 10 for b in skipped), [b.id for b in skipped if len(b.skip or "") < 10]


def _params(lang: str) -> list[object]:
    return [pytest.param(b, id=b.id, marks=[pytest.mark.service(s) for s in b.services])
            for b in BLOCKS if b.lang == lang and not b.skip]


@pytest.mark.parametrize("block", _params("toml"))
def test_toml_block_parses(block: Block) -> None:
    tomllib.loads(block.code)


@pytest.mark.parametrize("block", _params("python"))
def test_python_block_runs(block: Block, tmp_path: Path) -> None:
    script = tmp_path / "snippet.py"
    script.write_text(block.code)
    env = {**os.environ, "BOOSTKERNEL_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env=env)
    assert out.returncode == 0, f"{block.id} failed:\n{out.stderr[-3000:]}"
    for text in block.expect:
        assert text in out.stdout, f"{block.id}: {text!r} not in its output:\n{out.stdout[-2000:]}"
    if block.page == "docs/controls/schedule.md":
        runs = json.loads(out.stdout.splitlines()[-1])  # the interval schedule fired at least twice
        assert len(runs) >= 2 and set(runs) == {1}, runs
