"""Options of the workflow control: its ``@boost`` parameter, its default and documentation."""

from __future__ import annotations

from dataclasses import dataclass

from boostkernel.options import option

#: Position in the control chain: after the result writer (``ORDER_RESULTS`` = 900), so a member's
#: continuation runs once its result is stored, and before the message is acknowledged.
ORDER = 940


@dataclass(frozen=True, kw_only=True)
class WorkflowOptions:
    workflow: bool = option(False, "Tasks of this queue may be steps of a chain or members of a chord "
                                   "(needs results=True); off: no work per message")
