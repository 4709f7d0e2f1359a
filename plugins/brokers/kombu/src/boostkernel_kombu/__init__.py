"""kombu broker plugin of boostkernel: any kombu transport as a broker."""
