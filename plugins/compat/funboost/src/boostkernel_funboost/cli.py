"""``boostkernel funboost [MODULE]``: the boostkernel settings of a module's funboost-style boosters."""

from __future__ import annotations

import sys

import click


@click.command("funboost")
@click.argument("module", required=False)
@click.option("--brokers", is_flag=True, help="Print what every BrokerEnum member becomes and exit.")
def funboost_command(module: str | None, brokers: bool) -> None:
    """Show what each booster of MODULE (written with boostkernel_funboost) becomes: its queue, the
    BoosterParams fields it sets and the @boost options they map to. Without MODULE, use --brokers."""
    from .enums import BROKER_MAP, Refused, broker_members

    if brokers or module is None:
        if module is None and not brokers:
            click.echo("give a MODULE, or --brokers for the BrokerEnum table", err=True)
            sys.exit(2)
        for name, value in sorted(broker_members().items()):
            entry = BROKER_MAP[value]
            if isinstance(entry, Refused):
                click.echo(f"BrokerEnum.{name}: refused (nearest: {entry.nearest}) - {entry.reason}")
            else:
                click.echo(f"BrokerEnum.{name}: broker={entry.broker!r}" + (f" - {entry.note}" if entry.note else ""))
        return
    from boostkernel.loading import boosters_of

    from .booster import _BOOSTERS
    from .params import FIELDS, translate

    boosters_of(module)  # imports (or runs) the module, which decorates its functions
    if not _BOOSTERS:
        click.echo(f"no funboost-style boosters in {module}", err=True)
        sys.exit(2)
    for queue, b in _BOOSTERS.items():
        p = b.boost_params
        changed = {k: v for k, v in p.as_dict().items()
                   if FIELDS[k][1] != "auto" and v != FIELDS[k][0] and k != "queue_name"}
        _, kw = translate(p)
        click.echo(f"{queue}  ({b.consuming_function.__qualname__})")
        click.echo("  BoosterParams: " + (", ".join(f"{k}={v!r}" for k, v in changed.items()) or "(defaults)"))
        click.echo("  @boost:        " + ", ".join(f"{k}={v!r}" for k, v in kw.items()))
