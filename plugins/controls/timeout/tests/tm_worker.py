"""Worker for the process-overlay timeout test: QUEUE consumed by 2 processes with timeout=2."""

from __future__ import annotations

import os
import time

from boostkernel import boost

# From the environment: spawned children re-import this file without its command-line arguments.
queue, out = os.environ["TM_QUEUE"], os.environ["TM_OUT"]


@boost(queue, processes=2, workers=4, timeout=2.0)
def work(kind: str) -> None:
    with open(out, "a", buffering=1) as fh:
        if kind == "quick":
            fh.write("quick\n")
            return
        for _ in range(600):  # would run 60 s
            fh.write("tick\n")
            time.sleep(0.1)


if __name__ == "__main__":
    work.consume()
    print("ready", flush=True)
    work.wait()
