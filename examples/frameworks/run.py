"""Run the example tasks on the framework named by BOOSTKERNEL_BROKER; print one JSON line of outcomes."""

from __future__ import annotations

import json
import time

from boostkernel import TaskFailed, TaskOptions

from . import tasks


def main() -> dict[str, object]:
    for b in tasks.ALL:
        b.purge()
    for b in tasks.ALL:
        b.consume()  # the framework's own worker, in a background thread of this process
    out: dict[str, object] = {"broker": tasks.add.broker_name}
    out["add"] = [r.get(30) for r in [tasks.add.push(i, i) for i in range(5)]]
    out["flaky"] = tasks.flaky.push(2).get(30)
    t0 = time.time()
    out["countdown_waited"] = tasks.add.publish({"x": 1, "y": 1}, TaskOptions(countdown=1.5)).get(30) == 2 \
        and time.time() - t0 >= 1.5
    try:
        tasks.fail.push("bad input").get(30)
        out["fail"] = None
    except TaskFailed as exc:
        out["fail"] = [exc.exc_type, exc.remote_message]
    for b in tasks.ALL:
        b.stop(10)
    return out


if __name__ == "__main__":
    print(json.dumps(main()), flush=True)
