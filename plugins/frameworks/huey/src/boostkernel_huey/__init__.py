"""boostkernel-huey: huey as a whole-framework broker."""
