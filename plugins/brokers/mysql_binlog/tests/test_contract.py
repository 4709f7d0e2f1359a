"""The delivery contract for what mysql-binlog declares, against a private MariaDB with the binary log on.

The broker is a change-capture source: one consumer per queue reads the log (a server lock), so
"competing consumers" means standbys that take over; count and purge are not declared (a log has no
"waiting messages" to count or delete)."""

from __future__ import annotations

from collections.abc import Callable

import pymysql
import pytest
from boostkernel_mysql_binlog.broker import MysqlBinlogBroker

from boostkernel.broker import Broker
from boostkernel.testing import BrokerContract
from boostkernel.testing.private import PrivateMariaDB

FAST = {"flush_interval": 0.1, "lock_retry": 0.2, "max_deliveries": 3}


class TestMysqlBinlogBroker(BrokerContract):
    lease_seconds = 1.0
    recovery_seconds = 8.0
    competing_messages = 1000

    @pytest.fixture
    def make_broker(self, binlog_server: PrivateMariaDB) -> Callable[[str], MysqlBinlogBroker]:
        return lambda queue: MysqlBinlogBroker(queue, binlog_server.url.replace("mysql://", "mysql-binlog://"), **FAST)

    @pytest.fixture
    def cut_connection(self, binlog_server: PrivateMariaDB) -> Callable[[Broker], None]:
        def cut(broker: Broker) -> None:
            """KILL, on the server, every connection of the broker: the lock's, the publisher's and the
            binary-log dump."""
            assert isinstance(broker, MysqlBinlogBroker)
            ids = [c.thread_id() for c in (broker._ctl, broker._pub) if c is not None]
            admin = pymysql.connect(host="127.0.0.1", port=binlog_server.port, user="root", autocommit=True)
            try:
                with admin.cursor() as cur:
                    cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%%'")
                    ids += [r[0] for r in cur.fetchall()]
                    for i in ids:
                        cur.execute(f"KILL {int(i)}")
            finally:
                admin.close()

        return cut

    @pytest.fixture
    def restart_service(self, binlog_server: PrivateMariaDB) -> Callable[[], None]:
        return binlog_server.restart
