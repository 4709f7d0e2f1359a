"""RabbitMQ broker plugin of boostkernel (pika)."""
