"""Allowed time window (cron expression) for boostkernel consumers."""
