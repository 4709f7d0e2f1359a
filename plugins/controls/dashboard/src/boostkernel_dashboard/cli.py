"""``boostkernel dashboard``: serve the web dashboard with uvicorn."""

from __future__ import annotations

from typing import Any

import click


@click.command("dashboard")
@click.argument("module", required=False)
@click.option("-q", "--queue", "queues", multiple=True,
              help="Watch this queue (repeatable). Without MODULE: a queue of the configured broker.")
@click.option("--broker", default=None, help="Broker name or URL for --queue without MODULE.")
@click.option("--broker-url", default=None)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Beyond loopback a token is required.")
@click.option("--port", default=8700, show_default=True, type=int)
@click.option("--token", envvar="BOOSTKERNEL_DASHBOARD_TOKEN", default=None,
              help="Token that may see and act (or BOOSTKERNEL_DASHBOARD_TOKEN).")
@click.option("--read-token", envvar="BOOSTKERNEL_DASHBOARD_READ_TOKEN", default=None,
              help="Token that may only see (or BOOSTKERNEL_DASHBOARD_READ_TOKEN).")
@click.option("--interval", default=1.0, show_default=True, type=float, help="Seconds between two samples.")
def dashboard_command(module: str | None, queues: tuple[str, ...], broker: str | None, broker_url: str | None,
                      host: str, port: int, token: str | None, read_token: str | None, interval: float) -> None:
    """Web dashboard of the queues of MODULE (a dotted name or a .py path), or of the given --queue names:
    queues, workers, task records, charts, actions, live updates and /metrics."""
    from .app import check_bind, create_app

    try:
        check_bind(host, token)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    boosters = load_boosters(module, queues, broker, broker_url)
    if not boosters:
        raise click.ClickException("no queue to show: give a MODULE that defines boosters, or --queue NAME")
    import uvicorn

    app = create_app(boosters, token=token, read_token=read_token, host=host, interval=interval)
    click.echo(f"boostkernel dashboard on http://{host}:{port}/ ({len(boosters)} queue(s))", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def load_boosters(module: str | None, queues: tuple[str, ...], broker: str | None,
                  broker_url: str | None) -> list[Any]:
    from boostkernel.cli import booster_for
    from boostkernel.loading import boosters_of

    if module:
        return boosters_of(module, list(queues) or None)
    return [booster_for(q, None, broker, broker_url, results=True) for q in queues]
