"""boostkernel-tcp: Brokerless TCP: the consumer listens, producers send length-prefixed frames (asyncio streams, stdlib)."""
