"""Entry point of boostkernel-sql. Imports nothing heavy: SQLAlchemy is imported when the broker is used."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_brokers(registry: Registry) -> None:
    registry.add_broker("sql", "boostkernel_sql.broker:SqlBroker",
                        schemes=("mysql+pymysql", "mariadb+pymysql", "mysql+mysqldb", "mysql+mysqlconnector",
                                 "postgresql+psycopg", "postgresql+psycopg2", "postgresql+pg8000", "sqlite+pysqlite",
                                 "mssql+pyodbc", "mssql+pymssql", "oracle+oracledb"),
                        summary="Any SQLAlchemy 2 database: SKIP LOCKED (or optimistic) claims, heartbeats, "
                                "reaper, priority, native delay, DLQ (at-least-once)")
