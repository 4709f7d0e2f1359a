"""The Python examples of docs/controls/retry.md run as written."""

from __future__ import annotations

from pathlib import Path

import pytest

from boostkernel.testing.helpers import doc_example_params, run_doc_example

PAGE = Path(__file__).resolve().parents[4] / "docs" / "controls" / "retry.md"


@pytest.mark.parametrize("code", doc_example_params(PAGE))
def test_doc_example_runs(code: str, tmp_path: Path) -> None:
    assert 'failed after 4 attempt(s): ConnectionError: flaky network' in run_doc_example(code, tmp_path, PAGE)
