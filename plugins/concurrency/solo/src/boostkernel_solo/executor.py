"""Runs each job inline in the calling (consumer) thread: one at a time, in order, no hand-off cost."""

from __future__ import annotations

import logging
from typing import Any

from boostkernel.executor import Executor, ExecutorCapabilities, Job

log = logging.getLogger("boostkernel.solo")


class SoloExecutor(Executor):
    name = "solo"
    capabilities = ExecutorCapabilities(timeout=False, cancel=False, async_functions=True)

    def __init__(self, max_workers: int = 1, **options: Any) -> None:
        super().__init__(1, **options)
        self._loop: Any = None

    def submit(self, job: Job) -> None:
        try:
            if job.is_async:
                import asyncio

                if self._loop is None:
                    self._loop = asyncio.new_event_loop()
                self._loop.run_until_complete(job.run_async())
            else:
                job.run()
        except Exception:  # noqa: BLE001 - a crashing job must not stop the consumer that runs it inline
            log.exception("job crashed")

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        if self._loop is not None:
            self._loop.close()
            self._loop = None
