"""Periodic quota: at most N task starts per period, for boostkernel."""
