"""boostkernel-stomp."""
