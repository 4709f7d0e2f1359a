"""boostkernel-rocketmq."""
