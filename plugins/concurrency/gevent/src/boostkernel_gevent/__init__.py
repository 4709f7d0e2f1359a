"""gevent concurrency for boostkernel."""
