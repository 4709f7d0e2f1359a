"""boostkernel-file: a directory is the queue."""
