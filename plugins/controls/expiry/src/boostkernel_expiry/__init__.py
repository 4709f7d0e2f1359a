"""Message expiry for boostkernel: ``@boost(..., expires=60)`` or ``TaskOptions(expires=60)``."""
