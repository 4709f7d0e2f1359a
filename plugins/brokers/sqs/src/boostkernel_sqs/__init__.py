"""boostkernel-sqs."""
