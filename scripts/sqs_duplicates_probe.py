"""Competing ``sqs`` consumers on one queue, every delivery and every delete recorded: where do duplicates
come from? (docs/brokers/sqs.md, "Duplicates against moto").

    uv run python scripts/sqs_duplicates_probe.py [URL] [MESSAGES] [CONSUMERS]
    # defaults: sqs+http://127.0.0.1:9324 1500 8

Each consumer thread has its own broker (visibility 6 s, heartbeat 1 s: the contract suite's settings),
fetches 8 at a time and acks at once. For every message delivered more than once it prints the deliveries
(time, ApproximateReceiveCount, consumer) and the first holder's DeleteMessageBatch calls with the
server's answer for that message, then counts how the first holder's delete ended.
"""

from __future__ import annotations

import collections
import statistics
import sys
import threading
import time
import uuid
from typing import Any

from boostkernel_sqs.broker import SqsBroker

from boostkernel.broker import Outgoing

FAST = {"visibility_timeout": 6.0, "heartbeat_interval": 1.0, "ack_delay": 0.005}


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else "sqs+http://127.0.0.1:9324"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1500
    k = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    q = f"dups_{uuid.uuid4().hex[:8]}"
    pub = SqsBroker(q, url, **FAST)
    pub.publish_many([Outgoing(f"m{i}", b'{"i": %d}' % i) for i in range(n)])
    t0 = time.monotonic()
    log: list[tuple[str, int, float, int, str]] = []  # id, receives, time, consumer, receipt handle tail
    calls: dict[str, list[tuple[str, float, float, str]]] = {}  # handle tail -> (op, start, end, answer)
    lock = threading.Lock()
    stop = threading.Event()
    last = [time.monotonic()]

    def instrument(b: SqsBroker) -> None:
        orig = b._call

        def call(op: str, **kw: Any) -> Any:
            t = time.monotonic()
            r = orig(op, **kw)
            if op in ("delete_message_batch", "change_message_visibility_batch"):
                bad = {f["Id"]: f.get("Code", "?") for f in r.get("Failed", [])}
                with lock:
                    for e in kw["Entries"]:
                        calls.setdefault(e["ReceiptHandle"][-12:], []).append(
                            (op.split("_")[0], round(t - t0, 2), round(time.monotonic() - t0, 2), bad.get(e["Id"], "ok")))
            return r

        b._call = call  # type: ignore[method-assign]

    def run(c: int) -> None:
        b = SqsBroker(q, url, **FAST)
        instrument(b)
        while not stop.is_set():
            got = b.fetch(8, 0.5)
            now = time.monotonic()
            with lock:
                for d in got:
                    log.append((d.id, int(d.extra["receives"]), now, c, str(d.tag)[-12:]))
                    last[0] = now
            for d in got:
                b.started(d)
                b.ack(d)
        b.close()

    threads = [threading.Thread(target=run, args=(c,)) for c in range(k)]
    for t in threads:
        t.start()
    while True:
        time.sleep(0.5)
        with lock:
            seen = {m for m, *_ in log}
            quiet = time.monotonic() - last[0]
        if len(seen) >= n and quiet > 9:  # longer than the visibility timeout: late copies are back by now
            break
        if time.monotonic() - t0 > 300:
            print(f"gave up after 300 s with {len(seen)} of {n} seen")
            break
    stop.set()
    for t in threads:
        t.join()
    by: dict[str, list[tuple[float, int, int, str]]] = collections.defaultdict(list)
    for m, r, t, c, h in log:
        by[m].append((round(t - t0, 2), r, c, h))
    dups = {m: v for m, v in by.items() if len(v) > 1}
    print(f"{url}: {n} messages, {k} consumers, {len(log)} deliveries, {len(dups)} delivered more than once, "
          f"{time.monotonic() - t0:.0f} s")
    outcome: collections.Counter[str] = collections.Counter()
    for v in dups.values():
        deletes = [c for c in calls.get(v[0][3], []) if c[0] == "delete"]
        outcome["no delete sent" if not deletes else
                "delete answered Successful, delivered again later" if deletes[0][3] == "ok" else
                f"delete failed: {deletes[0][3]}"] += 1
    for m, v in list(dups.items())[:5]:
        print(f"  {m}: deliveries (t, ApproximateReceiveCount, consumer) {[x[:3] for x in v]}")
        print(f"      first holder's calls for it (op, start, end, answer): {calls.get(v[0][3], [])}")
    lat = [end - start for cs in calls.values() for op, start, end, _ in cs if op == "delete"]
    if lat:
        print(f"DeleteMessageBatch latency: median {statistics.median(lat):.2f} s, max {max(lat):.2f} s")
    print("first holder's delete of each message delivered twice:", dict(outcome))
    pub.delete_queues()
    pub.close()


if __name__ == "__main__":
    main()
