"""The ``zeromq`` broker: no server; consumers bind PULL sockets, producers PUSH to them (pyzmq).

URL: ``zmq://host:port`` — or several consumers, ``zmq://127.0.0.1:7310,127.0.0.1:7316``: a producer
connects its PUSH socket to every address and ZeroMQ deals messages round-robin over the consumers that
are connected (competing consumers); a consumer listens on the *first* address of its URL.

**At-most-once** (see :mod:`boostkernel.edge`). A publish returns once ZeroMQ took the message into its
outgoing queue: it is written to a consumer in the background. Lost: what a consumer process held
(ZeroMQ's receive queue and the buffer) when it stopped or died, and what a producer still queued when it
exited after ``linger`` (5 s by default). With ``immediate`` (ZMQ_IMMEDIATE, on), a producer queues only
for consumers whose connection is up, so a dead consumer is not dealt new messages; a publish with no
consumer connected waits up to ``connect_timeout`` and then raises ``BrokerUnavailable``. A full
consumer stops receiving, ZeroMQ's high-water marks fill, and publishes wait (``connect_timeout``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import zmq

from boostkernel.edge import ListenerBroker, Listening
from boostkernel.errors import BrokerUnavailable


def _endpoint(host: str, port: int | str) -> str:
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"


class ZeroMQBroker(ListenerBroker):
    name = "zeromq"
    default_url = "zmq://127.0.0.1:7310"
    connection: zmq.Socket[bytes] | None  # closed with LINGER: queued messages get linger seconds to leave

    def __init__(self, queue: str, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(queue, url, params, **options)
        self.hwm = int(self.options.get("hwm", 1000))

    # --- consumer -------------------------------------------------------------------------------
    def serve(self, listening: Listening, host: str, port: int) -> tuple[int, Callable[[], None]]:
        sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PULL)
        sock.setsockopt(zmq.RCVHWM, self.hwm)
        sock.setsockopt(zmq.LINGER, 0)
        if ":" in host:
            sock.setsockopt(zmq.IPV6, 1)
        sock.bind(_endpoint(host, port or "*"))
        bound = int(sock.getsockopt_string(zmq.LAST_ENDPOINT).rsplit(":", 1)[1])
        stopping = threading.Event()

        def receive() -> None:  # the only thread that touches the PULL socket
            try:
                while not stopping.is_set():
                    if listening.full():  # back-pressure: ZeroMQ's queues fill, producers wait
                        stopping.wait(0.005)
                        continue
                    if not sock.poll(100):
                        continue
                    frames: list[bytes] = []
                    try:
                        while len(frames) < 1000:
                            frames.append(sock.recv(zmq.NOBLOCK))
                    except zmq.Again:
                        pass
                    listening.put_frames(frames)
            finally:
                sock.close(0)

        t = threading.Thread(target=receive, name=f"boostkernel-zeromq-{self.queue}", daemon=True)
        t.start()

        def stop() -> None:
            stopping.set()
            t.join(10)

        return bound, stop

    # --- producer -------------------------------------------------------------------------------
    def _socket(self) -> zmq.Socket[bytes]:
        if self.connection is None:
            s: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUSH)
            s.setsockopt(zmq.SNDHWM, self.hwm)
            s.setsockopt(zmq.SNDTIMEO, int(self.connect_timeout * 1000))
            s.setsockopt(zmq.LINGER, int(float(self.options.get("linger", 5.0)) * 1000))
            s.setsockopt(zmq.IMMEDIATE, 1 if self.options.get("immediate", True) else 0)
            if any(":" in h for h, _ in self.addresses):
                s.setsockopt(zmq.IPV6, 1)
            for host, port in self.addresses:
                s.connect(_endpoint(host, port))
            self.connection = s
        return self.connection

    def send(self, frames: list[bytes]) -> None:
        with self.producer_lock:  # a ZeroMQ socket is not thread-safe
            s = self._socket()
            for i, f in enumerate(frames):
                try:
                    s.send(f)
                except zmq.Again:
                    raise BrokerUnavailable(
                        f"zeromq: no consumer at {self.url!r} took the message within {self.connect_timeout}s "
                        f"({i} of {len(frames)} sent); is a consumer listening there (or are they all full)?") from None
