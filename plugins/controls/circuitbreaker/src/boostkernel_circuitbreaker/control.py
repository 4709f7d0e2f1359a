"""The circuit breaker: ``circuit_breaker=(failures, cool_down_s)``.

* **closed** (normal): tasks run; ``failures`` consecutive task failures open the circuit. A success
  resets the count. Signals (skip, requeue, retry, dead-letter) do not count; a task that failed after
  its retries counts once.
* **open**: the gate dispatches nothing for ``cool_down_s`` seconds: messages stay in the queue (they are
  neither run nor failed), so a broken dependency does not burn through the backlog into the DLQ.
* **half-open**: after the cool-down one message is let through as a probe; its success closes the
  circuit, its failure opens it again for another cool-down.

The state is per consumer process: each worker process trips on what it sees itself.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from boostkernel.control import Control, TaskContext, count_per_seconds

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"
EXPECTED = "(failures, cool_down_seconds), e.g. (5, 30.0): after 5 consecutive failures stop consuming for 30 s"


class CircuitBreaker(Control):
    name = "circuitbreaker"
    count_per_seconds_options = {"circuit_breaker": EXPECTED}

    def __init__(self, booster: Any) -> None:
        super().__init__(booster)
        self.threshold, self.cool_down = count_per_seconds(self.params.circuit_breaker, "circuit_breaker", EXPECTED)
        self.state = CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self.trips = 0
        self._lock = threading.Lock()
        self._probe_done = threading.Event()

    def gate(self) -> None:
        if self.state == CLOSED:
            return
        while True:
            with self._lock:
                state, opened_at = self.state, self.opened_at
            if state == CLOSED:
                return
            if state == OPEN:
                left = opened_at + self.cool_down - time.monotonic()
                if left > 0:
                    if self.sleep(left):
                        return
                    continue
                with self._lock:  # cool-down over: let exactly one probe through
                    self.state = HALF_OPEN
                    self._probe_done.clear()
                return
            # HALF_OPEN: a probe is out; wait for its outcome
            while not self._probe_done.wait(0.1):
                if self.stopping:
                    return

    def after(self, ctx: TaskContext) -> None:
        status = ctx.status
        if status not in ("success", "failure"):
            return
        with self._lock:
            if status == "success":
                self.failures = 0
                if self.state != CLOSED:
                    self.state = CLOSED
                    self._log("circuit closed: the probe succeeded")
            else:
                self.failures += 1
                if self.state == HALF_OPEN or (self.state == CLOSED and self.failures >= self.threshold):
                    self.state = OPEN
                    self.opened_at = time.monotonic()
                    self.trips += 1
                    self._log(f"circuit open after {self.failures} consecutive failure(s): no task starts for "
                              f"{self.cool_down}s")
            self._probe_done.set()

    def _log(self, msg: str) -> None:
        if self.consumer is not None:
            self.consumer.log.warning("%s", msg)
