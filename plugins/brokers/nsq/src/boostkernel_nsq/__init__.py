"""boostkernel-nsq."""
