"""The Python examples of docs/controls/pause.md run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[4] / "docs" / "controls" / "pause.md"
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)


@pytest.mark.parametrize("code", BLOCKS, ids=[f"example-{i}" for i in range(len(BLOCKS))])
def test_doc_example_runs(code: str, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=120, cwd=tmp_path,
                         env={**os.environ, "BOOSTKERNEL_DATA_DIR": str(tmp_path / "data")})
    assert out.returncode == 0, f"docs/controls/pause.md example failed:\n{out.stderr.decode()[-3000:]}"
    assert 'sending to a@example.com' in out.stdout.decode()
