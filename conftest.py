"""Workspace-wide test setup: every test run keeps its SQLite files in a private data directory."""

from __future__ import annotations

import os
import tempfile

# Set before any booster is created, so no test writes into the user's real data directory. Under
# pytest-xdist each worker gets its own directory: tests that use the default SQLite queue file would
# otherwise share it across workers.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["BOOSTKERNEL_DATA_DIR"] = tempfile.mkdtemp(prefix=f"boostkernel-tests-{os.environ['PYTEST_XDIST_WORKER']}-")
else:
    os.environ.setdefault("BOOSTKERNEL_DATA_DIR", tempfile.mkdtemp(prefix="boostkernel-tests-"))

