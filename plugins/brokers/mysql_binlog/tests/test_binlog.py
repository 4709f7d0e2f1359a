"""What is particular to mysql-binlog: row changes as messages, the checkpoint across restarts, configuration."""

from __future__ import annotations

import json
import uuid

import pymysql
import pytest
from boostkernel_mysql_binlog.broker import MysqlBinlogBroker

from boostkernel.errors import ConfigError
from boostkernel.testing.private import PrivateMariaDB

FAST = {"flush_interval": 0.1, "lock_retry": 0.2}


def _url(server: PrivateMariaDB) -> str:
    return server.url.replace("mysql://", "mysql-binlog://")


def _sql(server: PrivateMariaDB, *statements: str) -> None:
    c = pymysql.connect(host="127.0.0.1", port=server.port, user="root", autocommit=True)
    try:
        with c.cursor() as cur:
            for s in statements:
                cur.execute(s)
    finally:
        c.close()


def _fetch(b: MysqlBinlogBroker, n: int, timeout: float = 10.0) -> list:
    import time

    out: list = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        out += b.fetch(n - len(out), 0.3)
    return out


def test_row_changes_become_messages(binlog_server: PrivateMariaDB) -> None:
    db = f"shop_{uuid.uuid4().hex[:6]}"
    _sql(binlog_server, f"CREATE DATABASE {db}",
         f"CREATE TABLE {db}.orders (id INT PRIMARY KEY, amount DECIMAL(10,2), placed DATETIME, note VARCHAR(20))",
         f"CREATE TABLE {db}.other (id INT PRIMARY KEY)")
    b = MysqlBinlogBroker(f"cdc_{db}", _url(binlog_server), tables=[f"{db}.orders"], **FAST)
    try:
        _sql(binlog_server,
             f"INSERT INTO {db}.orders VALUES (1, 9.50, '2026-12-02 10:00:00', 'a'), (2, 1, NULL, 'b')",
             f"INSERT INTO {db}.other VALUES (1)",
             f"UPDATE {db}.orders SET note='c' WHERE id=1",
             f"DELETE FROM {db}.orders WHERE id=2")
        got = _fetch(b, 4)
        msgs = [json.loads(d.body) for d in got]
        assert [(m["table"], m["event"], m["row"]["id"]) for m in msgs] == [
            ("orders", "insert", 1), ("orders", "insert", 2), ("orders", "update", 1), ("orders", "delete", 2)]
        assert msgs[0]["row"] == {"id": 1, "amount": "9.50", "placed": "2026-12-02T10:00:00", "note": "a"}
        assert msgs[2]["before"]["note"] == "a" and msgs[2]["row"]["note"] == "c"
        assert len({d.id for d in got}) == 4 and all(d.id.startswith("binlog.") for d in got)
        assert b.fetch(1, 0.5) == [], "a row of a table that is not watched was delivered"
        b.ack_many(got)
    finally:
        b.close()


def test_restart_resumes_at_the_checkpoint(binlog_server: PrivateMariaDB) -> None:
    """Acked rows are not delivered again after a restart; unacked ones are, counted as redeliveries."""
    db = f"shop_{uuid.uuid4().hex[:6]}"
    _sql(binlog_server, f"CREATE DATABASE {db}", f"CREATE TABLE {db}.t (id INT PRIMARY KEY)")
    queue = f"resume_{db}"
    first = MysqlBinlogBroker(queue, _url(binlog_server), tables=[f"{db}.t"], events="insert", **FAST)
    _sql(binlog_server, f"INSERT INTO {db}.t VALUES " + ",".join(f"({i})" for i in range(10)))
    got = _fetch(first, 10)
    assert [json.loads(d.body)["row"]["id"] for d in got] == list(range(10))
    first.ack_many(got[:6])  # the first six finished, the other four were in flight
    first.close()
    second = MysqlBinlogBroker(queue, _url(binlog_server), tables=[f"{db}.t"], events="insert", **FAST)
    try:
        again = _fetch(second, 4)
        assert [json.loads(d.body)["row"]["id"] for d in again] == [6, 7, 8, 9]
        assert all(d.delivery_count == 2 for d in again)
        second.ack_many(again)
        assert second.fetch(1, 0.5) == []
    finally:
        second.close()


def test_configuration_errors_say_the_fix(binlog_server: PrivateMariaDB) -> None:
    with pytest.raises(ConfigError, match="needs its database"):
        MysqlBinlogBroker("q", _url(binlog_server), tables=["orders"])
    with pytest.raises(ConfigError, match="events must be"):
        MysqlBinlogBroker("q", _url(binlog_server), events=["upsert"])
    with pytest.raises(ConfigError, match="mysql-binlog://"):
        MysqlBinlogBroker("q", "redis://localhost")


def test_a_server_without_the_row_binlog_is_refused(binlog_server: PrivateMariaDB) -> None:
    _sql(binlog_server, "SET GLOBAL binlog_format='STATEMENT'")  # new connections see it
    try:
        with pytest.raises(ConfigError, match="--binlog-format=ROW"):
            MysqlBinlogBroker(f"q_{uuid.uuid4().hex[:6]}", _url(binlog_server))
    finally:
        _sql(binlog_server, "SET GLOBAL binlog_format='ROW'")
