"""boostkernel-nats: the NATS JetStream broker."""
