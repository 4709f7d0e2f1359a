"""boostkernel-udp: Brokerless UDP: the consumer listens, producers send datagrams (stdlib)."""
