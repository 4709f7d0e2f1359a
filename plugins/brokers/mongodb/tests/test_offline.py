"""What can be tested honestly without a MongoDB server: configuration, lazy imports, registration, and
the real pymongo client's behaviour when the server cannot be reached (a refused local port)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from boostkernel.errors import BrokerUnavailable, ConfigError


def test_plugin_module_does_not_import_pymongo() -> None:
    code = ("import sys, boostkernel_mongodb.plugin; "
            "assert 'pymongo' not in sys.modules and 'bson' not in sys.modules, 'pymongo imported at listing time'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_registered_and_loaded() -> None:
    from boostkernel.plugins import Plugins

    ps = Plugins()
    assert ps.statuses["mongodb"].status == "loaded", ps.statuses["mongodb"].error
    reg = ps.get("broker", "mongodb")
    assert reg.factory == "boostkernel_mongodb.broker:MongoBroker"
    assert set(reg.schemes) == {"mongodb", "mongodb+srv"}


@pytest.mark.parametrize(("url", "option", "name"), [
    ("mongodb://db.internal:27017/jobs", None, "jobs"),
    ("mongodb://u:secret@a:1,b:2/jobs?replicaSet=rs0", None, "jobs"),
    ("mongodb://127.0.0.1:27017", None, "boostkernel"),
    ("mongodb://127.0.0.1:27017/?authSource=admin", None, "boostkernel"),
    ("mongodb+srv://cluster.example.net/app", "other", "other"),
])
def test_database_name(url: str, option: str | None, name: str) -> None:
    from boostkernel_mongodb._common import database_name

    assert database_name(url, option) == name


@pytest.mark.parametrize("url", ["redis://x", "mongodb://", "mongodb:///db"])
def test_bad_urls_are_rejected_with_the_fix(url: str) -> None:
    from boostkernel_mongodb._common import validate_url

    with pytest.raises(ConfigError, match="mongodb"):
        validate_url(url)


def test_bad_database_name_is_rejected() -> None:
    from boostkernel_mongodb._common import database_name

    with pytest.raises(ConfigError, match="not valid"):
        database_name("mongodb://h/bad.name")


def test_password_is_masked_in_describe() -> None:
    from boostkernel_mongodb.broker import MongoBroker

    b = MongoBroker("q", "mongodb://app:s3cret@127.0.0.1:1/jobs", None)
    assert "s3cret" not in str(b.describe())
    assert b.describe()["database"] == "jobs"


def test_dead_after_must_exceed_two_heartbeats() -> None:
    from boostkernel_mongodb.broker import MongoBroker

    with pytest.raises(ConfigError, match="dead_after"):
        MongoBroker("q", "mongodb://127.0.0.1:1/x", None, heartbeat_interval=2, dead_after=3)


def test_unreachable_server_raises_broker_unavailable_not_hangs() -> None:
    """The real pymongo client against a local port nobody listens on: construction does not connect;
    the first operation fails within the server selection timeout with BrokerUnavailable (which the
    consume loop retries with backoff) and the message names the server without its password."""
    from boostkernel_mongodb.broker import MongoBroker

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connections to it are refused
    t0 = time.monotonic()
    b = MongoBroker("q", f"mongodb://app:s3cret@127.0.0.1:{port}/jobs", None, server_selection_timeout=1,
                    publish_timeout=0.5)
    assert time.monotonic() - t0 < 1.0, "the constructor must not connect"
    with pytest.raises(BrokerUnavailable) as err:
        b.count()
    assert time.monotonic() - t0 < 10
    assert "s3cret" not in str(err.value)
    with pytest.raises(BrokerUnavailable):
        from boostkernel.broker import Outgoing

        b.publish(Outgoing("id-1", b"{}"))
    b.close()
