"""PostgreSQL broker and store for boostkernel."""
