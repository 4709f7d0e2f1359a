"""SQL broker for boostkernel on any SQLAlchemy database."""
