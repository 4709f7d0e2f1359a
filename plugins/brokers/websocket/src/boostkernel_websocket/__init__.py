"""boostkernel-websocket: Brokerless WebSocket: the consumer serves an endpoint, producers stream messages to it."""
