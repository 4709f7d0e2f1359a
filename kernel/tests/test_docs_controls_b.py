"""Every Python example in docs/controls/{core,dedup,expiry,stats,schedule}.md runs as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["core", "dedup", "expiry", "stats", "schedule"]


def _blocks() -> list[object]:
    out = []
    for page in PAGES:
        text = (ROOT / "docs" / "controls" / f"{page}.md").read_text()
        for i, block in enumerate(re.findall(r"```python\n(.*?)```", text, re.S)):
            out.append(pytest.param(page, i, block, id=f"{page}-{i}"))
    return out


@pytest.mark.parametrize(("page", "index", "code"), _blocks())
def test_doc_example_runs(page: str, index: int, code: str, tmp_path: Path) -> None:
    script = tmp_path / f"{page}_{index}.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=120, cwd=tmp_path,
                         env={**os.environ, "BOOSTKERNEL_DATA_DIR": str(tmp_path / "data")})
    assert out.returncode == 0, f"docs/controls/{page}.md example {index} failed:\n{out.stderr.decode()[-3000:]}"
    if page == "dedup":
        assert out.stdout.decode().splitlines()[-1] == "[42]"
    if page == "schedule":
        runs = json.loads(out.stdout.decode().splitlines()[-1])
        assert len(runs) >= 2 and set(runs) == {1}
