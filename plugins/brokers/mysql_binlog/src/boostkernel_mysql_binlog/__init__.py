"""boostkernel-mysql-binlog: row changes of MySQL/MariaDB tables become tasks."""
