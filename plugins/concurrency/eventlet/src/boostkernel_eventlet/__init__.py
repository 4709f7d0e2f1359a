"""eventlet concurrency for boostkernel."""
