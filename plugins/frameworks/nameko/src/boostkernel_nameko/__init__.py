"""boostkernel-nameko: nameko as a boostkernel broker."""
