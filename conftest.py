"""Workspace-wide test setup: every test run keeps its SQLite files in a private data directory."""

from __future__ import annotations

import os
import tempfile

# Set before any booster is created, so no test writes into the user's real data directory.
os.environ.setdefault("BOOSTKERNEL_DATA_DIR", tempfile.mkdtemp(prefix="boostkernel-tests-"))
