"""Retries with exponential backoff and jitter, in the worker or by republishing, for boostkernel."""
