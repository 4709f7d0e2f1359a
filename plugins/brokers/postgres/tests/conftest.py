"""A dedicated schema per test session on the shared PostgreSQL (dropped at the end)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from boostkernel.testing.helpers import service_reachable, service_url


@pytest.fixture(scope="session")
def pg_schema() -> Iterator[str]:
    schema = f"bk_test_{uuid.uuid4().hex[:8]}"
    yield schema
    if service_reachable("postgres"):
        import psycopg

        with psycopg.connect(service_url("postgres"), autocommit=True) as c:
            c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
