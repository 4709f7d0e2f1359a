"""Redis brokers (reliable list, streams, pub/sub) and the Redis result/coordination store for boostkernel."""
