"""boostkernel-pulsar."""
