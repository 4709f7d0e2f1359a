"""Entry point of boostkernel-mysql-binlog (imports nothing heavy: pymysqlreplication is imported lazily)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_brokers(registry: Registry) -> None:
    registry.add_broker("mysql-binlog", "boostkernel_mysql_binlog.broker:MysqlBinlogBroker",
                        schemes=("mysql-binlog",),
                        summary="Change capture: row changes of chosen MySQL/MariaDB tables become tasks")
