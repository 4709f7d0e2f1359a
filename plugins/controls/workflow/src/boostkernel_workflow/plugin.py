"""Entry point of boostkernel-workflow (imports nothing heavy)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry

from .options import ORDER, WorkflowOptions


@hookimpl
def register_controls(registry: Registry) -> None:
    registry.add_control("workflow", "boostkernel_workflow.control:WorkflowControl", options=WorkflowOptions,
                         order=ORDER, summary="chain, group and chord: continue a workflow after each member")
    registry.add_booster_method("s", "boostkernel_workflow.api:booster_signature",
                                summary="A signature of this task for chain/group/chord")
    registry.add_booster_method("si", "boostkernel_workflow.api:booster_immutable_signature",
                                summary="A signature that ignores the previous step's result")
