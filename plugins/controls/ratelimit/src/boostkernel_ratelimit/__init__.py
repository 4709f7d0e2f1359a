"""Precise rate limit (qps, fractional, process or global scope) for boostkernel."""
