"""boostkernel-mqtt."""
