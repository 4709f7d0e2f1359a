"""Entry point of boostkernel-funboost: the ``boostkernel funboost`` command (imports nothing heavy).

The compatibility API itself (``from boostkernel_funboost import boost, BoosterParams, ...``) needs no
registration; the command shows what a module written for funboost becomes on boostkernel."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_controls(registry: Registry) -> None:
    registry.add_command("funboost", factory="boostkernel_funboost.cli:funboost_command",
                         summary="boostkernel funboost MODULE: what each funboost-style booster of MODULE becomes "
                                 "(@boost options, broker); or the BrokerEnum table")

