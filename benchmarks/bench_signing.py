"""Cost of ``signing_key``: publish-side encode and consume-side verify + decode, signed vs unsigned.

    uv run python benchmarks/bench_signing.py [-n 50000]

No broker is involved (the broker's cost does not change): this measures only the work signing adds
per message, on a typical small envelope, in one process. Rows: ``booster.message()`` (validate, encode,
sign) with and without a key, and the worker's decoder (``decode`` alone vs verify-then-decode, with one
key and with two keys during a rotation, where an old-key message is checked against both).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable

os.environ.setdefault("BOOSTKERNEL_DATA_DIR", tempfile.mkdtemp())

from boostkernel import boost  # noqa: E402
from boostkernel.consumer import _verifying_decode  # noqa: E402
from boostkernel.message import decode  # noqa: E402
from boostkernel.signing import Signer  # noqa: E402


def rate(n: int, fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=50_000)
    n = ap.parse_args().n

    @boost("bench_sign_off", broker="memory")
    def off(user: str, amount: int, note: str) -> None: ...

    @boost("bench_sign_on", broker="memory", signing_key="k-new,k-old")
    def on(user: str, amount: int, note: str) -> None: ...

    args = ("alice", 42, "x" * 100)
    plain, signed = off.message(args).body, on.message(args).body
    one, rotating = _verifying_decode(Signer(["k-new"])), _verifying_decode(Signer(["k-new", "k-old"]))
    rows = [
        ("message() unsigned", rate(n, lambda: off.message(args))),
        ("message() signed", rate(n, lambda: on.message(args))),
        ("decode unsigned", rate(n, lambda: decode(plain, "q"))),
        ("verify+decode, 1 key", rate(n, lambda: one(signed, "q"))),
        ("verify+decode, 2 keys", rate(n, lambda: rotating(signed, "q"))),
    ]
    print(f"{'row':28} {'msg/s':>12} {'us/msg':>8}   (envelope {len(signed)} bytes signed, {len(plain)} unsigned)")
    for name, r in rows:
        print(f"{name:28} {r:12,.0f} {1e6 / r:8.2f}")


if __name__ == "__main__":
    main()
