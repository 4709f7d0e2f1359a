"""Circuit breaker: stop consuming after N consecutive failures, for boostkernel."""
