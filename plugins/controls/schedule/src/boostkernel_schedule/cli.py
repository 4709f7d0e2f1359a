"""``boostkernel scheduler MODULE``: publish the schedules of a module's boosters until SIGTERM/SIGINT."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

import click


@click.command("scheduler")
@click.argument("module")
@click.option("-q", "--queue", "queues", multiple=True, help="Only these queues (repeatable).")
@click.option("-g", "--group", default=None, help="Only boosters with this group.")
@click.option("--refresh", default=5.0, show_default=True, help="Seconds between reloads of the saved schedules.")
@click.option("--misfire-grace", default=60.0, show_default=True,
              help="A tick missed by at most this many seconds (scheduler busy or starting) still fires.")
@click.option("--list", "list_only", is_flag=True, help="Print the saved schedules and exit.")
def scheduler_command(module: str, queues: tuple[str, ...], group: str | None, refresh: float, misfire_grace: float,
                      list_only: bool) -> None:
    """Publish the schedules saved with booster.schedule(...) for the boosters of MODULE.

    Run as many schedulers as you like (for availability): each tick is published once.
    """
    from boostkernel.loading import boosters_of

    from .api import Scheduler, list_schedules

    boosters = boosters_of(module, list(queues) or None, group)
    if not boosters:
        click.echo(f"no boosters in {module}", err=True)
        sys.exit(2)
    if list_only:
        import json

        for b in boosters:
            for d in list_schedules(b):
                click.echo(json.dumps(d, sort_keys=True))
        return
    s = Scheduler(boosters, refresh=refresh, misfire_grace_time=misfire_grace)
    done = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    s.start()
    try:
        while not done.wait(0.5):
            pass
    finally:
        s.stop()
