"""Entry point of boostkernel-deploy: adds the ``boostkernel deploy`` command (imports nothing heavy: click
and the command's module load when the CLI starts; asyncssh only when a deploy command runs)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_controls(registry: Registry) -> None:
    registry.add_command("deploy", factory="boostkernel_deploy.cli:deploy_command",
                         summary="boostkernel deploy MODULE --host HOST / deploy status / deploy stop: consumers "
                                 "of a module on another host over SSH")

