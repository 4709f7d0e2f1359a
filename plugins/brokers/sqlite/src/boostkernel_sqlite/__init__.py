"""SQLite broker and store for boostkernel: the embedded default (durable, multi-process on one host)."""
