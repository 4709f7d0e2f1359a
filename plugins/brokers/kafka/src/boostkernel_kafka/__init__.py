"""boostkernel-kafka: the Kafka broker (kafka-python) and the shared offset tracker."""
