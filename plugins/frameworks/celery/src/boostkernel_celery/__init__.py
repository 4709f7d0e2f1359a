"""boostkernel-celery: celery as a whole-framework broker."""
