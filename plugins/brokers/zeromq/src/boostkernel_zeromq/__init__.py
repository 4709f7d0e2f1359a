"""boostkernel-zeromq: Brokerless ZeroMQ PUSH/PULL: consumers bind PULL, producers PUSH to them (competing consumers)."""
