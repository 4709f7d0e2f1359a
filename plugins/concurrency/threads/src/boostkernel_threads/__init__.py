"""Thread-pool concurrency for boostkernel (the default)."""
