"""The expiry control: a message that has waited longer than ``expires`` seconds is dropped, not run.

The age of a message is measured from the moment it became due: its publish time, or its ``eta`` for a
delayed message (a message published with ``countdown=3600, expires=60`` runs if it starts within a
minute after the hour). ``TaskOptions(expires=...)`` overrides the booster's ``expires`` per message.
A dropped message is acknowledged with status ``expired`` (recorded in the results when ``results=True``,
where ``AsyncResult.get()`` raises ``TaskFailed`` with type ``expired``). Clocks of publishing and
consuming hosts are compared, so keep them in sync (NTP) when ``expires`` is only a few seconds.
"""

from __future__ import annotations

import time
from typing import Any

from boostkernel.control import Control, TaskContext
from boostkernel.errors import Skip


class ExpiryControl(Control):
    name = "expiry"
    positive_seconds = {"expires": "(messages older than that are dropped)"}

    def __init__(self, booster: Any) -> None:
        super().__init__(booster)
        self.expires = self.booster.params.expires

    def before(self, ctx: TaskContext) -> None:
        env = ctx.envelope
        opts = env.options
        expires = opts.get("expires", self.expires) if opts else self.expires
        if expires is None:
            return
        due = env.published_at
        eta = opts.get("eta") if opts else None
        if eta is not None and eta > due:
            due = eta
        age = time.time() - due
        if age > expires:
            raise Skip(f"expired: due {age:.3f}s ago, expires after {expires}s", status="expired",
                       detail={"age": age, "expires": expires})
