"""The ``boostkernel`` command. Plugins add subcommands through the ``register_commands`` hook."""

from __future__ import annotations

from .main import cli, main

__all__ = ["cli", "main"]
