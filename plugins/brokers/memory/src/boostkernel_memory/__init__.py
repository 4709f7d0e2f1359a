"""In-process broker and store for boostkernel (tests, single-process apps, benchmarks)."""
