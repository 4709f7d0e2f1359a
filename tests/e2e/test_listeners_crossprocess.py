"""The listening brokers across processes: a real ``boostkernel worker`` listens, this process produces.

For each of zeromq, tcp, udp, http, grpc, websocket: the worker runs every pushed task once; results come
back (``call()`` in the answer for http/grpc, the default store otherwise); with a secret configured in
the worker (``BOOSTKERNEL_SECRET``), unsigned and wrongly signed messages are refused, never run, and
logged once; the worker stops cleanly on SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from boostkernel.broker import Outgoing
from boostkernel.errors import MessageRejected
from boostkernel.message import Envelope
from boostkernel.testing.helpers import wait_until

BK = str(Path(sys.executable).parent / "boostkernel")
SCHEMES = {"zeromq": "zmq", "tcp": "tcp", "udp": "udp", "http": "http", "grpc": "grpc", "websocket": "ws"}

TASKS = '''
import os
from boostkernel import boost


@boost({queue!r}, broker={broker!r}, broker_url={url!r}, results=True)
def double(x):
    with open({out!r}, "a") as f:
        f.write(f"{{x}}\\n")
    return 2 * x
'''


def _bound(port: int, kind: int) -> bool:
    """Whether something listens on the port (our bind, without SO_REUSEPORT, fails)."""
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("broker", sorted(SCHEMES))
def test_worker_in_another_process(broker: str, tmp_path: Path, unique_queue: str) -> None:
    from boostkernel.worker import _import_target

    kind = socket.SOCK_DGRAM if broker == "udp" else socket.SOCK_STREAM
    port = _free_port(kind)
    url = f"{SCHEMES[broker]}://127.0.0.1:{port}"
    out = tmp_path / "ran.txt"
    path = tmp_path / f"tasks_{broker}_{unique_queue}.py"
    path.write_text(textwrap.dedent(TASKS.format(queue=unique_queue, broker=broker, url=url, out=str(out))))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "BOOSTKERNEL_SECRET": "right"}
    proc = subprocess.Popen([BK, "worker", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    made: list[Any] = []
    try:
        # UDP says nothing when no one listens (the datagrams are lost): wait for the worker's listener
        assert wait_until(lambda: _bound(port, kind) or proc.poll() is not None, 60), "the worker did not listen"
        double = _import_target(str(path)).double
        cls = type(double.broker)
        right, wrong, unsigned = (cls(unique_queue, url, None, **o) for o in ({"secret": "right"},
                                                                            {"secret": "wrong"}, {}))
        made += [right, wrong, unsigned]
        for bad in (wrong, unsigned):
            for i in range(3):
                env_ = Envelope(unique_queue, [1000 + i], {})
                with contextlib.suppress(MessageRejected):
                    bad.publish(Outgoing(env_.id, env_.encode()))
        outs = []
        for i in range(30):
            env_ = Envelope(unique_queue, [i], {})
            right.publish(Outgoing(env_.id, env_.encode()))
            outs.append(env_.id)
        assert wait_until(lambda: out.exists() and len(out.read_text().split()) >= 30, 30), \
            out.read_text() if out.exists() else "nothing ran"
        if broker in ("http", "grpc"):
            # the synchronous call: the result comes back in the answer (the worker's in-process store)
            import importlib

            plugin = importlib.import_module(f"boostkernel_{broker}")
            double.params.broker_options["secret"] = "right"
            double.broker.close()
            double._broker.take()  # rebuilt with the secret
            assert plugin.call(double, 21, timeout=20) == 42
        else:
            from boostkernel.results import AsyncResult

            assert AsyncResult(outs[5], double).get(timeout=20) == 10  # the default store (sqlite, this host)
        ran = sorted(int(x) for x in out.read_text().split())
        assert [x for x in ran if x < 1000] == sorted(list(range(30)) + ([21] if broker in ("http", "grpc") else []))
        assert not [x for x in ran if x >= 1000], "a refused message ran"
    finally:
        for b in made:
            b.close()
        if "double" in locals():
            double.broker.close()
        proc.send_signal(signal.SIGTERM)
        log = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, log[-3000:]
    assert log.count("refused a message") == 1, log[-3000:]
