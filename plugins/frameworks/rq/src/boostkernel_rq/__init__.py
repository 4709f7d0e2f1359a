"""boostkernel-rq: rq as a whole-framework broker."""
