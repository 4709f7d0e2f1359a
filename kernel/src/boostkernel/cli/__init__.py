"""The ``boostkernel`` command. Plugins add subcommands through the ``register_commands`` hook."""

from __future__ import annotations

from .main import booster_for, cli, main, queue_options

__all__ = ["cli", "main", "booster_for", "queue_options"]
