"""boostkernel-http: Brokerless HTTP: the consumer serves an endpoint, push POSTs to it; synchronous calls return the result (RPC)."""
