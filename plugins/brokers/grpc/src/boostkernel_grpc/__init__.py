"""boostkernel-grpc: Brokerless gRPC: unary and streaming publish to the consumer's server; synchronous calls return the result (RPC)."""
