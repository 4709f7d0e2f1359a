"""A worker process for the global rate-limit test: consume QUEUE for SECONDS, log each start time."""

from __future__ import annotations

import sys
import time

from boostkernel import boost

queue, broker, url, out, seconds, qps = sys.argv[1:7]
params = {"broker": broker, "qps": float(qps), "qps_scope": "global", "workers": 8}
if url != "-":
    params["broker_url"] = url

with open(out, "a", buffering=1) as fh:

    @boost(queue, **params)
    def task(i: int) -> None:
        fh.write(f"{time.time()!r}\n")

    task.consume()
    print("ready", flush=True)
    time.sleep(float(seconds))
    task.stop(5)
