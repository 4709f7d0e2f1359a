"""The pause control (``pausable=True``): ``Booster.pause()`` / ``resume()`` from any process or machine.

``pause()`` sets a flag in the store (``boostkernel_pause.api.pause_key``); the gate of every consumer of
the queue reads it at most every ``poll_interval`` (0.5 s) - never once per message - and while it is set
the dispatch loop fetches nothing more. Tasks already running finish. A pause therefore takes effect
within ``poll_interval`` plus the time to hand over what was already fetched (at most ``prefetch``
messages, which are dispatched before the gate is consulted again).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from boostkernel.control import Control

from .api import pause_key

log = logging.getLogger("boostkernel.pause")
POLL_INTERVAL = 0.5


class PauseControl(Control):
    name = "pause"
    needs_store = True

    def __init__(self, booster: Any) -> None:
        super().__init__(booster)
        self.key = pause_key(booster.queue)
        self.poll_interval = float(self.options.pause_poll_interval)
        self._checked_at = -1e9
        self._paused = False

    def _read(self) -> bool:
        try:
            return bool(self.booster.store.get(self.key))
        except Exception as exc:  # noqa: BLE001 - keep the last known state through a store outage
            log.warning("pause flag of %r unreadable (%s: %s)", self.booster.queue, type(exc).__name__, exc)
            return self._paused

    def gate(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < self.poll_interval:
            if not self._paused:
                return
        self._checked_at = now
        self._paused = self._read()
        if not self._paused:
            return
        log.info("queue %r paused: waiting for resume()", self.booster.queue)
        while self._paused:
            if self.sleep(self.poll_interval):
                return  # the consumer is stopping
            self._paused = self._read()
            self._checked_at = time.monotonic()
        log.info("queue %r resumed", self.booster.queue)
