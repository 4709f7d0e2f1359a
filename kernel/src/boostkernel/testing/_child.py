"""The consumer process of the delivery contract, run by path (so neither pytest nor the testing package
is imported: it starts fast). Reads JSON commands on stdin, answers JSON lines on stdout; see
:class:`boostkernel.testing.delivery.ConsumerProcess`."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

if sys.path and sys.path[0] == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]  # this folder's modules (plugin.py, helpers.py …) must not shadow top-level ones

from boostkernel.broker import Broker, Delivery  # noqa: E402


def _child_main(spec_json: str) -> None:
    import importlib

    spec = json.loads(spec_json)
    mod, _, qual = spec["cls"].partition(":")
    obj: Any = importlib.import_module(mod)
    for part in qual.split("."):
        obj = getattr(obj, part)
    broker: Broker = obj(spec["queue"], spec["url"], **spec["options"])
    held: dict[str, Delivery] = {}
    out_lock = threading.Lock()
    draining = threading.Event()
    drain_thread: threading.Thread | None = None

    def say(msg: dict[str, Any]) -> None:
        with out_lock:
            sys.stdout.write(json.dumps(msg) + "\n")
            sys.stdout.flush()

    def drain() -> None:
        while draining.is_set():
            batch = broker.fetch(16, 0.2)
            if batch:
                broker.ack_many(batch)
                say({"ev": "got", "ids": [d.id for d in batch]})

    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        try:
            if op == "fetch":
                deadline = time.monotonic() + cmd["seconds"]
                got: list[Delivery] = []
                while len(got) < cmd["at_least"] and time.monotonic() < deadline:
                    got += broker.fetch(cmd["n"] - len(got), min(0.5, max(0.05, deadline - time.monotonic())))
                for d in got:
                    held[d.id] = d
                say({"re": op, "got": [{"id": d.id, "count": d.delivery_count} for d in got]})
            elif op == "start":
                for i in cmd["ids"]:
                    broker.started(held[i])
                say({"re": op})
            elif op == "ack":
                for i in cmd["ids"]:
                    broker.ack(held.pop(i))
                say({"re": op})
            elif op == "drain":
                draining.set()
                drain_thread = threading.Thread(target=drain)
                drain_thread.start()
                say({"re": op})
            elif op == "stop_drain":
                draining.clear()
                if drain_thread is not None:
                    drain_thread.join(30)
                say({"re": op})
            elif op == "close":
                broker.close()
                say({"re": op})
                return
            else:
                say({"error": f"unknown op {op!r}"})
        except Exception as exc:  # noqa: BLE001 - reported to the test, which fails with it
            say({"error": f"{type(exc).__name__}: {exc}"})



if __name__ == "__main__":
    _child_main(sys.argv[1])
