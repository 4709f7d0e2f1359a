"""MongoDB broker for boostkernel."""
