"""Example third-party boostkernel plugin: a broker storing each message as a file."""
