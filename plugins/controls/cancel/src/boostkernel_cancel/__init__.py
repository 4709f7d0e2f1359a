"""Remote cancel: revoke pending tasks and stop running ones by task id, for boostkernel."""
