"""boostkernel-confluent-kafka: the Kafka broker on confluent-kafka (librdkafka)."""
