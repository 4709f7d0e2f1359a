"""Pause and resume consumption remotely, for boostkernel."""
