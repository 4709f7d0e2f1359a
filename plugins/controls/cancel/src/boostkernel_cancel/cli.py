"""``boostkernel revoke QUEUE TASK_ID``."""

from __future__ import annotations

from typing import Any

import click


def add_commands(cli: click.Group) -> None:
    if "revoke" in cli.commands:
        return
    from boostkernel.cli import booster_for, queue_options

    @cli.command()
    @queue_options
    @click.argument("task_ids", nargs=-1, required=True)
    def revoke(queue: str, module: str | None, broker: str | None, broker_url: str | None,
               task_ids: tuple[str, ...]) -> None:
        """Revoke TASK_IDS of QUEUE: pending ones never run, running ones are stopped (cancellable=True)."""
        b: Any = booster_for(queue, module, broker, broker_url)
        for tid in task_ids:
            b.revoke(tid)
            click.echo(f"revoked {tid}")
