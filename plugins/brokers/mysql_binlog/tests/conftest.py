"""One private MariaDB with the row-based binary log for the plugin's tests (never the shared 3306 one)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from boostkernel.testing.private import PrivateMariaDB


@pytest.fixture(scope="session")
def binlog_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateMariaDB]:
    if not PrivateMariaDB.available():
        if os.environ.get("CI"):
            pytest.fail("MariaDB server binaries are missing under CI (apt-get install mariadb-server)")
        pytest.skip("MariaDB server binaries not found (apt-get install mariadb-server)")
    server = PrivateMariaDB.start(tmp_path_factory.mktemp("binlog"), binlog=True)
    yield server
    server.stop()
