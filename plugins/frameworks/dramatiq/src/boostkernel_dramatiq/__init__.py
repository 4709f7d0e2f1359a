"""boostkernel-dramatiq: dramatiq as a whole-framework broker."""
