"""Single-thread concurrency for boostkernel: one task at a time, inline in the consumer thread."""
