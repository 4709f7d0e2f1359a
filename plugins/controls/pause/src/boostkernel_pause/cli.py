"""``boostkernel pause QUEUE`` and ``boostkernel resume QUEUE``."""

from __future__ import annotations

from typing import Any

import click


def add_commands(cli: click.Group) -> None:
    if "pause" in cli.commands:
        return
    from boostkernel.cli import booster_for, queue_options

    @cli.command()
    @queue_options
    def pause(queue: str, module: str | None, broker: str | None, broker_url: str | None) -> None:
        """Pause consumption of QUEUE on every worker (those with pausable=True stop within ~1 s)."""
        b: Any = booster_for(queue, module, broker, broker_url)
        b.pause()
        click.echo(f"paused {queue}")

    @cli.command()
    @queue_options
    def resume(queue: str, module: str | None, broker: str | None, broker_url: str | None) -> None:
        """Resume consumption of QUEUE."""
        b: Any = booster_for(queue, module, broker, broker_url)
        b.resume()
        click.echo(f"resumed {queue}")
